package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/otgate/otgate/qemu"
)

// How a run stops. The stop signals are Ctrl-C (SIGINT), SIGTERM and
// SIGHUP (the terminal closed, an ssh session dropped): all three power
// the gate down, so it unmounts /perm cleanly; left to its default,
// SIGHUP would end this program and take QEMU with it (PDEATHSIG).
//
// The first stop signal cancels the stopper's context: a start-up still
// going on (building the tools, the lab, the plant, qemu.Start) ends
// and what it started is cleaned up; a gate already running gets the
// ACPI power button (runUntilStopped). A further signal kills QEMU.
var stopSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}

// Times of the stop sequence.
const (
	powerButtonWait = 10 * time.Second // for QEMU to take the power button press
	powerOffWait    = 60 * time.Second // for the gate to power off after it
)

// stopper watches the stop signals from watchStop until release.
type stopper struct {
	// ctx is cancelled at the first stop signal, with the signal as its
	// cause (context.Cause).
	ctx   context.Context
	again chan struct{} // closed at the second stop signal
	sigs  chan os.Signal
	ended chan struct{} // the watching goroutine returned
}

// watchStop starts watching the stop signals. Call release when done.
func watchStop() *stopper {
	ctx, cancel := context.WithCancelCause(context.Background())
	s := &stopper{ctx: ctx, again: make(chan struct{}), sigs: make(chan os.Signal, 4), ended: make(chan struct{})}
	signal.Notify(s.sigs, stopSignals...)
	go func() {
		defer close(s.ended)
		n := 0
		for sig := range s.sigs {
			n++
			switch n {
			case 1:
				cancel(stopSignal{sig})
			case 2:
				close(s.again)
			}
		}
		cancel(nil)
	}()
	return s
}

// release stops watching: the stop signals get their default action
// again.
func (s *stopper) release() {
	signal.Stop(s.sigs)
	close(s.sigs)
	<-s.ended
}

// signal is the stop signal received, or nil.
func (s *stopper) signal() os.Signal {
	var ss stopSignal
	if errors.As(context.Cause(s.ctx), &ss) {
		return ss.sig
	}
	return nil
}

// stopSignal is the cause of a stopper's cancelled context.
type stopSignal struct{ sig os.Signal }

func (s stopSignal) Error() string { return fmt.Sprintf("stopped by %v", s.sig) }

// gate is what the stop sequence does with the VM: *qemu.VM.
type gate interface {
	Powerdown(ctx context.Context) error
	Kill()
	Wait(ctx context.Context) (qemu.Exit, error)
}

var _ gate = (*qemu.VM)(nil)

// runUntilStopped waits until g's QEMU exits, or a stop signal comes:
// then it presses the power button and waits up to powerOffWait for the
// power-off; a second signal, a press QEMU does not take, or no
// power-off in time kills QEMU. It says what it does on w and returns
// how QEMU ended.
func runUntilStopped(s *stopper, g gate, w io.Writer) qemu.Exit {
	exited := make(chan qemu.Exit, 1)
	go func() {
		e, _ := g.Wait(context.Background())
		exited <- e
	}()
	select {
	case e := <-exited:
		return e
	case <-s.ctx.Done():
	}
	fmt.Fprintf(w, "\notgate-run: %v: powering the gate down (Ctrl-C again to kill it)\n", s.signal())
	pctx, cancel := context.WithTimeout(context.Background(), powerButtonWait)
	err := g.Powerdown(pctx)
	cancel()
	if err != nil {
		fmt.Fprintf(w, "otgate-run: power-down: %v; killing\n", err)
		g.Kill()
		return <-exited
	}
	timer := time.NewTimer(powerOffWait)
	defer timer.Stop()
	select {
	case e := <-exited:
		return e
	case <-s.again:
		fmt.Fprintf(w, "otgate-run: stop signal again: killing\n")
	case <-timer.C:
		fmt.Fprintf(w, "otgate-run: no power-off after %v; killing\n", powerOffWait)
	}
	g.Kill()
	return <-exited
}
