// Command otgate-run boots a built image (out/<board>/; a debug image,
// out/<board>-debug/, with -image) under QEMU for
// `make run` (with -demo: the demo, see demo.go): with a software TPM and a persistent disk whose state lives in
// out/run/<board>/ (so the next run sees the same TPM and /perm), the board's
// watchdog, and the lab network (the gate's uplink on a tap in a private
// "lab" namespace, its OT downlink bridged into a "plant" namespace). The
// serial console is shown on the terminal and fed from standard input.
//
// Ctrl-C, SIGTERM or SIGHUP (the terminal closed, an ssh session dropped)
// presses the ACPI power button and waits for the gate to power off; a
// second one, or 60 s without power-off, kills QEMU. During the start-up
// (building the demo tools, the lab, the plant, the boot until QEMU
// answers) the signal cancels it instead. The demo's plant simulator runs
// in a process group of its own, so the terminal's Ctrl-C does not reach
// it: it serves until the gate is down, then it is stopped. Everything it
// started (QEMU, swtpm, the plant, namespaces) goes away with it. See
// stop.go.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/otgate/otgate/board"
	"github.com/otgate/otgate/image"
	"github.com/otgate/otgate/qemu"
	"github.com/otgate/otgate/qemu/lab"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "otgate-run:", err)
		os.Exit(1)
	}
}

func run() error {
	boardName := flag.String("board", "qemu-x86_64", "board to boot ("+fmt.Sprint(board.Names())+")")
	imageDir := flag.String("image", "", "image directory (default out/<board>, with -demo out/demo/<board>; a debug image (make image DEBUG=1): out/<board>-debug)")
	stateDir := flag.String("state", "", "TPM state and persistent disk directory, kept between runs (default out/run/<board>)")
	noLab := flag.Bool("no-lab", false, "no lab network (the NICs are unconnected)")
	memory := flag.String("m", "", "guest memory (default: the board's)")
	demo := flag.Bool("demo", false, "the demo (make run): a demo image (otgate-image -demo), the plant simulator, uplink on 127.0.0.1:-port, factory-fresh every run")
	port := flag.Int("port", 8443, "with -demo: the host's 127.0.0.1 port forwarded to the gate's proxy (0: pick a free one)")
	binDir := flag.String("bin", filepath.Join("out", "bin"), "with -demo: where to build the client (otgate) and the plant simulator")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	// From here on a stop signal ends the run in order (see stop.go).
	stop := watchStop()
	defer stop.release()
	ctx := stop.ctx
	b, err := board.Lookup(*boardName)
	if err != nil {
		return err
	}
	if *imageDir == "" {
		*imageDir = filepath.Join("out", b.Name)
		if *demo {
			*imageDir = filepath.Join("out", "demo", b.Name)
		}
	}
	if *stateDir == "" {
		*stateDir = filepath.Join("out", "run", b.Name)
		if *demo {
			*stateDir = filepath.Join("out", "run", b.Name+"-demo")
		}
	}
	// QEMU runs in its own directory: hand it absolute paths. The demo's
	// instructions name the client by its absolute path too: they are
	// for another terminal, which need not start in this directory.
	for _, p := range []*string{imageDir, stateDir, binDir} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
	}
	var creds *image.DemoCredentials
	var tools demoTools
	if *demo {
		if *noLab {
			return errors.New("-demo needs the lab network (the plant): drop -no-lab")
		}
		if creds, err = image.ReadDemoCredentials(*imageDir); err != nil {
			return err
		}
		// Factory-fresh: a rebuilt demo image measures differently, and the
		// old TPM state would (rightly) keep the gate in quarantine.
		if err := os.RemoveAll(*stateDir); err != nil {
			return fmt.Errorf("reset demo state: %w", err)
		}
		fmt.Fprintf(os.Stderr, "otgate-run: building the client and the plant simulator into %s\n", *binDir)
		if tools, err = buildDemoTools(ctx, *binDir); err != nil {
			return startErr(stop, err)
		}
	}
	if err := os.MkdirAll(*stateDir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}

	opts := []qemu.Option{
		qemu.WithTPM(filepath.Join(*stateDir, "tpm")),
		qemu.WithSerialLog(filepath.Join(*stateDir, "serial.log")),
		qemu.WithConsoleTo(os.Stdout),
		qemu.WithConsoleFrom(stdinReader{}),
	}
	if b.Boot == board.UEFIDisk {
		opts = append(opts, qemu.WithDisk(filepath.Join(*stateDir, "disk.img"), 0))
	} else {
		opts = append(opts, qemu.WithDisk(filepath.Join(*stateDir, "perm.img"), 1<<30))
	}
	if b.Watchdog.QEMUDevice != "" {
		opts = append(opts, qemu.WithWatchdog(qemu.WatchdogReset), qemu.WithReboot())
	}
	if *memory != "" {
		opts = append(opts, qemu.WithMemory(*memory))
	}
	var l *lab.Lab
	var plant *plantProc
	if !*noLab {
		if l, err = lab.New(ctx); err != nil {
			return startErr(stop, fmt.Errorf("lab network (needs root): %w", err))
		}
		defer l.Close()
		opts = append(opts, qemu.WithLab(l))
	}
	if *demo {
		if plant, err = startPlant(ctx, l, tools.plant); err != nil {
			return startErr(stop, err)
		}
		defer func() {
			if plant != nil { // a return before the gate ran
				_ = plant.stop()
			}
		}()
		opts = append(opts, qemu.WithUserNet(qemu.HostForward{HostPort: *port, GuestPort: 8443}))
	}

	fmt.Fprintf(os.Stderr, "otgate-run: booting %s from %s (TCG: give it a few seconds)\n", b.Name, *imageDir)
	fmt.Fprintf(os.Stderr, "otgate-run: TPM state, /perm disk and serial log in %s (delete it for a factory-fresh gate)\n", *stateDir)
	if l != nil && !*demo {
		fmt.Fprintf(os.Stderr, "otgate-run: lab: gate uplink %s <-> tap %s (%s) in the lab namespace; OT downlink %s <-> bridge %s <-> plant %s\n",
			b.Interface(board.Uplink), lab.UplinkTap, lab.UplinkHostCIDR, b.Interface(board.Downlink), lab.Bridge, lab.PlantCIDR)
		fmt.Fprintf(os.Stderr, "otgate-run: shell in the lab namespace: nsenter --net=%s; in the plant: nsenter --net=%s\n",
			l.Uplink.Path(), l.Plant.Path())
	}

	vm, err := qemu.Start(ctx, b, *imageDir, opts...)
	if err != nil {
		return startErr(stop, err)
	}
	defer vm.Close()
	if *demo {
		// After Start: with -port 0 only the VM knows the port it got.
		fmt.Fprintf(os.Stderr, "otgate-run: DEMO: gate uplink %s on QEMU user networking, 127.0.0.1:%d on this host -> gate :8443; OT downlink %s <-> bridge %s <-> plant simulator (plc-tank) on %s:502\n",
			b.Interface(board.Uplink), vm.HostPort(8443), b.Interface(board.Downlink), lab.Bridge, lab.PlantIP())
		fmt.Fprintf(os.Stderr, "otgate-run: DEMO: the login instructions follow once the gate is up (about a minute under TCG)\n")
	}
	fmt.Fprintf(os.Stderr, "otgate-run: stop with Ctrl-C (ACPI power-down; a second Ctrl-C kills the VM)\n\n")
	if *demo {
		go announceDemo(vm, os.Stderr, creds, tools, vm.HostPort(8443))
	}

	exit := runUntilStopped(stop, vm, os.Stderr)
	fmt.Fprintf(os.Stderr, "otgate-run: QEMU ended: %s\n", exit)
	var plantErr error
	if plant != nil {
		// The gate is down: the plant it talked to can go.
		plantErr = plant.stop()
		plant = nil
		if plantErr == nil {
			fmt.Fprintf(os.Stderr, "otgate-run: plant simulator stopped\n")
		}
	}
	if exit.Code != 0 || exit.Killed {
		return errors.Join(errors.New("the VM did not power off cleanly"), plantErr)
	}
	return plantErr
}

// startErr is err from a start-up step; when a stop signal cancelled the
// step, it says so first (the step's own error is then its consequence).
func startErr(s *stopper, err error) error {
	if sig := s.signal(); sig != nil {
		return fmt.Errorf("%v during the start-up: stopped (%w)", sig, err)
	}
	return err
}

// stdinReader hides os.Stdin's *os.File type so QEMU gets a pipe, not the
// terminal: the terminal stays in its normal mode and Ctrl-C reaches this
// program, which powers the gate down instead of QEMU dying at once.
type stdinReader struct{}

func (stdinReader) Read(p []byte) (int, error) { return os.Stdin.Read(p) }

var _ io.Reader = stdinReader{}
