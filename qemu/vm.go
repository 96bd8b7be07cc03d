// Package qemu boots an otgate image under QEMU for tests and for `make run`.
//
// Start takes a board definition and an image directory (out/<board>/, or
// out/<board>-debug/ for a debug image, as the image builder writes them)
// and options in the functional style of
// u-root's vmtest:
//
//	vm, err := qemu.Start(ctx, b, "out/qemu-x86_64",
//		qemu.WithTPM(stateDir), qemu.WithLab(l), qemu.WithWatchdog(qemu.WatchdogReset))
//	defer vm.Close()
//	line, err := vm.WaitFor(ctx, "init: ready (")
//	err = vm.Powerdown()
//	exit, err := vm.Wait(ctx) // exit.CleanPowerOff(), exit.WatchdogFired()
//
// Tests use StartT, which closes the VM in t.Cleanup and keeps the serial
// log on failure. QEMU always runs under TCG (KVM is not usable here) with
// the board's CPU model, no graphics, -no-reboot unless asked, a
// virtio-rng, the serial console captured from QEMU's standard output, and
// QMP on a unix socket in the VM's temporary directory: the harness
// connects once and records every event, so Exit tells a watchdog reset
// (WATCHDOG, SHUTDOWN guest-reset) from a clean power-off (SHUTDOWN
// guest-shutdown, exit 0).
//
// Every child (QEMU, swtpm) is started with PDEATHSIG, so even a test
// binary killed outright leaves no emulator behind.
package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/otgate/otgate/board"
)

// VM is a running (or ended) QEMU virtual machine.
type VM struct {
	Board *board.Board

	dir        string // per-VM temporary directory, removed by Close
	serialPath string
	cmd        *exec.Cmd
	con        *console
	qmp        *qmpClient
	tpm        *swtpm
	stderr     *tailBuffer
	forwards   []HostForward
	started    time.Time
	logFile    *serialLog
	consoleIn  *os.File // write end of QEMU's standard input, with WithConsoleFrom

	killMu   sync.Mutex
	killed   bool
	timedOut bool
	timer    *time.Timer

	qmpSet    chan struct{} // closed when Start's QMP dial attempt ended
	done      chan struct{} // closed when QEMU exited and its output is drained
	exit      Exit
	closeOnce sync.Once
	closeErr  error
}

// Start boots b's image from imageDir. The context bounds the start-up
// only (until QMP answers): cancelling it ends the start-up promptly
// (make run's Ctrl-C), with an error that wraps ctx.Err(); the VM runs
// until it exits, is killed, or WithTimeout expires. On error nothing is
// left running.
//
// A forwarded host port that Start picked (HostPort 0) is free when
// picked but can be taken by another program before QEMU binds it; QEMU
// then exits at once, and Start tries again with new ports (at most
// hostPortAttempts times in all).
func Start(ctx context.Context, b *board.Board, imageDir string, opts ...Option) (*VM, error) {
	for attempt := 1; ; attempt++ {
		vm, err := start(ctx, b, imageDir, opts...)
		if err == nil || attempt == hostPortAttempts || !errors.Is(err, errHostPortTaken) {
			return vm, err
		}
	}
}

// hostPortAttempts bounds Start's tries when a picked host port was taken.
const hostPortAttempts = 3

// errHostPortTaken: QEMU could not bind a host port Start had picked.
var errHostPortTaken = errors.New("qemu: a picked host port was taken before QEMU could bind it")

// afterPickHook, when set (tests), runs between picking host ports and
// starting QEMU.
var afterPickHook func([]HostForward)

func start(ctx context.Context, b *board.Board, imageDir string, opts ...Option) (vm *VM, err error) {
	if b == nil {
		return nil, errors.New("qemu: Start: nil board")
	}
	c := &config{}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	if _, err := exec.LookPath(b.QEMU.Binary); err != nil {
		return nil, fmt.Errorf("qemu: board %s needs %s (Debian qemu-system-x86 / qemu-system-arm): %w", b.Name, b.QEMU.Binary, err)
	}
	sweepStale()
	dir, err := os.MkdirTemp("", "otgate-qemu-")
	if err != nil {
		return nil, fmt.Errorf("qemu: temporary directory: %w", err)
	}
	if err := writeOwner(dir); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("qemu: temporary directory %s: %w", dir, err)
	}
	vm = &VM{Board: b, dir: dir, con: newConsole(), stderr: &tailBuffer{max: 8 << 10},
		qmpSet: make(chan struct{}), done: make(chan struct{})}
	defer func() {
		if err != nil {
			_ = vm.Close()
			vm = nil
		}
	}()

	p := vmPaths{qmp: filepath.Join(dir, "qmp.sock")}
	// A cancelled start-up copies no disk and starts nothing.
	if err := ctx.Err(); err != nil {
		return vm, fmt.Errorf("qemu: Start: %w", err)
	}
	if err := vm.prepareDisks(b, c, imageDir, &p); err != nil {
		return vm, err
	}
	if vm.forwards, err = pickHostPorts(c.forwards); err != nil {
		return vm, err
	}
	if afterPickHook != nil {
		afterPickHook(vm.forwards)
	}
	if c.tpmState != "" {
		if vm.tpm, err = startSwtpm(c.tpmState, dir); err != nil {
			return vm, err
		}
		p.tpm = vm.tpm.socket
	}
	inv, err := buildInvocation(b, c, p, vm.forwards)
	if err != nil {
		return vm, err
	}

	vm.serialPath = c.serialLog
	if vm.serialPath == "" {
		vm.serialPath = filepath.Join(dir, "serial.log")
	}
	limit := c.serialLogLimit
	if limit == 0 {
		limit = DefaultSerialLogLimit
	}
	if vm.logFile, err = createSerialLog(vm.serialPath, limit); err != nil {
		return vm, err
	}

	vm.cmd = exec.Command(inv.binary, inv.args...)
	vm.cmd.Dir = dir
	vm.cmd.ExtraFiles = inv.files
	vm.cmd.Stderr = vm.stderr
	// Its own process group: a terminal's Ctrl-C reaches the program that
	// owns the VM (make run powers it down), not QEMU directly. PDEATHSIG
	// still kills QEMU if that program dies.
	vm.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	// The console goes through a pipe this package owns (not StdoutPipe,
	// which Wait may close before the last bytes are read).
	conR, conW, err := os.Pipe()
	if err != nil {
		return vm, fmt.Errorf("qemu: console pipe: %w", err)
	}
	defer conW.Close()
	vm.cmd.Stdout = conW
	if c.consoleIn != nil {
		inR, inW, err := os.Pipe()
		if err != nil {
			conR.Close()
			return vm, fmt.Errorf("qemu: console input pipe: %w", err)
		}
		defer inR.Close()
		vm.consoleIn = inW
		vm.cmd.Stdin = inR
		go func() { _, _ = io.Copy(inW, c.consoleIn) }()
	}
	if err := ctx.Err(); err != nil { // cancelled while the disks were copied
		conR.Close()
		return vm, fmt.Errorf("qemu: Start: %w", err)
	}
	if err := vm.cmd.Start(); err != nil {
		conR.Close()
		return vm, fmt.Errorf("qemu: start %s: %w", inv.binary, err)
	}
	conW.Close()
	vm.started = time.Now()
	if c.timeout > 0 {
		vm.timer = time.AfterFunc(c.timeout, func() { vm.kill(true) })
	}
	drained := make(chan struct{})
	go func() {
		vm.con.copyFrom(conR, vm.logFile, c.console)
		conR.Close()
		close(drained)
	}()
	exited := make(chan struct{})
	go vm.reap(drained, exited)

	qctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	alive := func() bool {
		select {
		case <-exited:
			return false
		default:
			return true
		}
	}
	q, err := dialQMP(qctx, p.qmp, alive)
	vm.killMu.Lock()
	vm.qmp = q
	vm.killMu.Unlock()
	close(vm.qmpSet)
	if err != nil {
		if picked(c.forwards) && ctx.Err() == nil {
			// QEMU that could not bind a forward exits at once, but the
			// QMP dial can fail (connection reset) before that exit is
			// reaped: give it a moment before reading its stderr.
			select {
			case <-exited:
			case <-time.After(2 * time.Second):
			}
		}
		if !alive() && picked(c.forwards) && strings.Contains(vm.stderr.String(), "Could not set up host forwarding rule") {
			return vm, fmt.Errorf("%w: %w\n%s", errHostPortTaken, err, strings.TrimSpace(vm.stderr.String()))
		}
		return vm, fmt.Errorf("%w\n%s", err, vm.Diagnose())
	}
	return vm, nil
}

// picked says whether Start picks a host port for one of fwd.
func picked(fwd []HostForward) bool {
	for _, f := range fwd {
		if f.HostPort == 0 {
			return true
		}
	}
	return false
}

// reap waits for QEMU, then for the console and QMP to drain, and records
// the exit.
func (vm *VM) reap(drained, exited chan struct{}) {
	werr := vm.cmd.Wait()
	close(exited)
	<-drained
	if vm.timer != nil {
		vm.timer.Stop()
	}
	e := Exit{Code: vm.cmd.ProcessState.ExitCode()}
	if ws, ok := vm.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		e.Signal = ws.Signal().String()
	}
	_ = werr // the exit status is in ProcessState
	// Start dials QMP after starting QEMU: wait for that attempt to end, then
	// for the reader to see the socket close, so every event is recorded.
	<-vm.qmpSet
	if q := vm.qmpClient(); q != nil {
		select {
		case <-q.done:
		case <-time.After(5 * time.Second):
		}
		e.Events = q.snapshot()
	}
	vm.killMu.Lock()
	e.Killed, e.TimedOut = vm.killed, vm.timedOut
	vm.killMu.Unlock()
	e.Stderr = vm.stderr.String()
	vm.exit = e
	// swtpm ends when QEMU tells it to at a clean exit (CMD_SHUTDOWN);
	// after a killed QEMU, stop ends it. Wait for it, so that a boot that
	// follows with the same TPM state never meets the old one holding its
	// lock.
	if vm.tpm != nil {
		vm.tpm.stop()
	}
	close(vm.done)
}

func (vm *VM) qmpClient() *qmpClient {
	vm.killMu.Lock()
	defer vm.killMu.Unlock()
	return vm.qmp
}

func (vm *VM) prepareDisks(b *board.Board, c *config, imageDir string, p *vmPaths) error {
	switch b.Boot {
	case board.DirectKernel:
		p.kernel, p.initramfs = c.kernel, c.initramfs
		if p.kernel == "" {
			p.kernel, p.initramfs = filepath.Join(imageDir, "kernel"), filepath.Join(imageDir, "initramfs")
		}
		for _, f := range []string{p.kernel, p.initramfs} {
			if _, err := os.Stat(f); err != nil {
				return fmt.Errorf("qemu: board %s image: %w (build it with `make image BOARD=%s`)", b.Name, err, b.Name)
			}
		}
		if c.disk {
			if err := ensureRawDisk(c.diskPath, c.diskSize); err != nil {
				return err
			}
			p.disk = c.diskPath
		}
	case board.UEFIDisk:
		img := filepath.Join(imageDir, "disk.img")
		if _, err := os.Stat(img); err != nil {
			return fmt.Errorf("qemu: board %s image: %w (build it with `make image BOARD=%s`)", b.Name, err, b.Name)
		}
		p.disk = filepath.Join(vm.dir, "disk.img")
		if c.disk {
			p.disk = c.diskPath
		}
		if _, err := os.Stat(p.disk); errors.Is(err, os.ErrNotExist) {
			if err := copySparse(img, p.disk); err != nil {
				return err
			}
		}
		p.vars = filepath.Join(vm.dir, "vars.fd")
		if err := copySparse(b.QEMU.VarsTemplate, p.vars); err != nil {
			return fmt.Errorf("qemu: board %s UEFI variable store: %w", b.Name, err)
		}
	}
	return nil
}

// pickHostPorts replaces host port 0 with a free loopback port.
func pickHostPorts(fwd []HostForward) ([]HostForward, error) {
	out := append([]HostForward(nil), fwd...)
	for i := range out {
		if out[i].HostPort != 0 {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("qemu: pick a host port for guest port %d: %w", out[i].GuestPort, err)
		}
		out[i].HostPort = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	return out, nil
}

// HostPort is the 127.0.0.1 port forwarded to guestPort by WithUserNet, or 0.
func (vm *VM) HostPort(guestPort int) int {
	for _, f := range vm.forwards {
		if f.GuestPort == guestPort {
			return f.HostPort
		}
	}
	return 0
}

// WaitFor waits until a serial console line matches pattern (a string
// prefix or a *regexp.Regexp) and returns that line. It scans the console
// from the first line kept (the last 100000 at least), so a line printed
// before the call is found; a line QEMU ended in the middle of (no newline)
// never matches. It fails early with ErrExited when QEMU ends first. When it fails
// waiting, the error ends with Diagnose's account of the VM's processes.
func (vm *VM) WaitFor(ctx context.Context, pattern any) (string, error) {
	line, err := vm.con.waitFor(ctx, pattern)
	if err != nil && (errors.Is(err, ErrExited) || ctx.Err() != nil) {
		err = fmt.Errorf("%w\n%s", err, vm.Diagnose())
	}
	return line, err
}

// Lines returns the console lines so far (the last 100000 at least).
func (vm *VM) Lines() []string { return vm.con.snapshot() }

// Log returns the console output so far as text.
func (vm *VM) Log() string {
	var b bytes.Buffer
	for _, l := range vm.con.snapshot() {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// Tail returns the last n console lines as text, for failure messages.
func (vm *VM) Tail(n int) string { return vm.con.tail(n) }

// SerialLogPath is the file the console is written to (its newest part:
// see WithSerialLogLimit).
func (vm *VM) SerialLogPath() string { return vm.serialPath }

// Events returns the QMP events seen so far.
func (vm *VM) Events() []Event {
	if q := vm.qmpClient(); q != nil {
		return q.snapshot()
	}
	return nil
}

// PID is QEMU's process id.
func (vm *VM) PID() int { return vm.cmd.Process.Pid }

// TPMPID is swtpm's process id, or 0 without WithTPM.
func (vm *VM) TPMPID() int {
	if vm.tpm == nil {
		return 0
	}
	return vm.tpm.pid()
}

// Started is when QEMU was started.
func (vm *VM) Started() time.Time { return vm.started }

// QMP runs one QMP command and returns its raw JSON result.
func (vm *VM) QMP(ctx context.Context, command string, args map[string]any) ([]byte, error) {
	q := vm.qmpClient()
	if q == nil {
		return nil, errors.New("qemu: QMP not connected")
	}
	return q.execute(ctx, command, args)
}

// Powerdown presses the ACPI power button (QMP system_powerdown). The guest
// decides what to do; Wait tells how it ended.
func (vm *VM) Powerdown(ctx context.Context) error {
	_, err := vm.QMP(ctx, "system_powerdown", nil)
	return err
}

// Quit asks QEMU to exit at once (QMP quit): the guest gets no say.
func (vm *VM) Quit(ctx context.Context) error {
	_, err := vm.QMP(ctx, "quit", nil)
	if errors.Is(err, ErrExited) {
		return nil
	}
	return err
}

// Kill ends QEMU with SIGKILL.
func (vm *VM) Kill() { vm.kill(false) }

func (vm *VM) kill(timeout bool) {
	vm.killMu.Lock()
	defer vm.killMu.Unlock()
	if vm.cmd == nil || vm.cmd.Process == nil {
		return
	}
	select {
	case <-vm.done:
		return
	default:
	}
	vm.killed = true
	vm.timedOut = vm.timedOut || timeout
	_ = vm.cmd.Process.Kill()
}

// Wait waits until QEMU (and its swtpm) has exited and returns how.
func (vm *VM) Wait(ctx context.Context) (Exit, error) {
	select {
	case <-vm.done:
		return vm.exit, nil
	case <-ctx.Done():
		return Exit{}, fmt.Errorf("qemu: waiting for %s VM to exit: %w; console ends:\n%s\n%s", vm.Board.Name, ctx.Err(), vm.con.tail(20), vm.Diagnose())
	}
}

// Close kills QEMU if it still runs, stops swtpm, and removes the VM's
// temporary files (the serial log too, unless WithSerialLog named it). It
// is safe to call more than once.
func (vm *VM) Close() error {
	vm.closeOnce.Do(func() {
		var errs []error
		if vm.cmd != nil && vm.cmd.Process != nil {
			vm.kill(false)
			<-vm.done
		}
		if q := vm.qmpClient(); q != nil {
			errs = append(errs, q.close())
		}
		if vm.tpm != nil {
			vm.tpm.stop()
		}
		if vm.logFile != nil {
			errs = append(errs, vm.logFile.Close())
		}
		if vm.consoleIn != nil {
			_ = vm.consoleIn.Close()
		}
		errs = append(errs, os.RemoveAll(vm.dir))
		vm.closeErr = errors.Join(errs...)
	})
	return vm.closeErr
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

var _ io.Writer = (*tailBuffer)(nil)
