package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/otgate/otgate/qemu/lab"
)

// The demo's plant simulator (otgate-plant) runs in the lab's plant
// namespace in a process group of its own: the terminal's Ctrl-C (sent to
// the foreground process group, this program's) does not reach it. It
// serves until the gate is down, then this program stops it (stop).

// Times of the plant's start and stop.
const (
	plantStartWait = 20 * time.Second // for its "listening on" line
	plantStopWait  = 5 * time.Second  // for its exit after SIGTERM
	plantLogLines  = 50               // of its log kept
)

// plantProc is the running plant simulator.
type plantProc struct {
	cmd     *exec.Cmd
	logDone chan struct{} // its standard error reached EOF (it exited)

	mu  sync.Mutex
	log []string // its last plantLogLines log lines

	stopOnce sync.Once
	stopErr  error
}

// startPlant runs the tank simulator bin on lab.PlantCIDR's address, port
// 502, in l's plant namespace, and waits until it listens (or ctx ends:
// it is then killed). ctx bounds the start only: the plant runs until
// stop.
func startPlant(ctx context.Context, l *lab.Lab, bin string) (*plantProc, error) {
	addr := lab.PlantIP().String() + ":502"
	cmd := l.Plant.Command(bin, "-listen", addr)
	cmd.SysProcAttr.Setpgid = true // Pdeathsig (set by Command) stays
	out, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("plant simulator: %w", err)
	}
	p := &plantProc{cmd: cmd, logDone: make(chan struct{})}
	listening := make(chan struct{})
	go func() {
		defer close(p.logDone)
		announced := false
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log = append(p.log, line)
			if len(p.log) > plantLogLines {
				p.log = p.log[len(p.log)-plantLogLines:]
			}
			p.mu.Unlock()
			if !announced && strings.Contains(line, "listening on "+addr) {
				close(listening)
				announced = true
			}
		}
	}()
	deadline := time.NewTimer(plantStartWait)
	defer deadline.Stop()
	fail := func(format string, args ...any) (*plantProc, error) {
		cmd.Process.Kill()
		<-p.logDone
		cmd.Wait()
		return nil, fmt.Errorf("plant simulator: "+format+"; its log:\n%s", append(args, strings.Join(p.lastLog(), "\n"))...)
	}
	select {
	case <-listening:
		return p, nil
	case <-p.logDone:
		return fail("exited at start")
	case <-deadline.C:
		return fail("did not listen on %s within %v", addr, plantStartWait)
	case <-ctx.Done():
		return fail("start: %v", context.Cause(ctx))
	}
}

// stop stops the plant: SIGTERM (it closes its listener and connections),
// SIGKILL after plantStopWait. An error says it had to be killed or did
// not exit cleanly. It is safe to call more than once.
func (p *plantProc) stop() error {
	p.stopOnce.Do(func() {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			p.cmd.Process.Kill()
			p.stopErr = fmt.Errorf("plant simulator: SIGTERM: %w (killed)", err)
		} else {
			select {
			case <-p.logDone:
			case <-time.After(plantStopWait):
				p.cmd.Process.Kill()
				p.stopErr = fmt.Errorf("plant simulator: no exit %v after SIGTERM (killed)", plantStopWait)
			}
		}
		<-p.logDone // its stderr is read to the end before Wait closes it
		if err := p.cmd.Wait(); err != nil && p.stopErr == nil {
			p.stopErr = fmt.Errorf("plant simulator: %w; its log:\n%s", err, strings.Join(p.lastLog(), "\n"))
		}
	})
	return p.stopErr
}

// lastLog is the plant's last log lines.
func (p *plantProc) lastLog() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.log...)
}
