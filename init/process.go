package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/initstatus"
	"github.com/otgate/otgate/internal/ready"
	"golang.org/x/sys/unix"
)

// proc is one running instance of a service.
type proc struct {
	pid    int
	exit   <-chan unix.WaitStatus
	notify <-chan string // lines from the notify pipe; nil unless notify
	// notifyR is the pipe's read end (readNotify reads and closes it):
	// flushNotify sets its read deadline.
	notifyR *os.File
	// notifyDone is closed when the supervisor stops listening to notify.
	notifyDone chan struct{}
	// outDone is closed when copyOutput has logged all the process's
	// output (the end of its stdout/stderr pipe).
	outDone chan struct{}
}

// drainOutput waits, at most flushWait, until the output of the exited
// process p (and of the leftovers of its group, killed by then) has been
// logged, so that its last lines come before init's line about its exit.
// A descendant that left the group may hold the pipe open: then init
// goes on and says so.
func (p *proc) drainOutput(log *logger, name string) {
	if p.outDone == nil {
		return
	}
	t := time.NewTimer(flushWait)
	defer t.Stop()
	select {
	case <-p.outDone:
	case <-t.C:
		log.Printf("%s: output pipe still open %s after its exit (a process it left holds it); going on", name, short(flushWait))
	}
}

// stopNotify ends the notify pipe's reader (the supervisor is done with
// this instance).
func (p *proc) stopNotify() {
	if p.notifyDone != nil {
		close(p.notifyDone)
		p.notifyDone = nil
	}
}

// spawnOptions are process settings that differ between PID 1 and tests.
type spawnOptions struct {
	// deathSignal kills children when a non-PID-1 init dies (tests).
	deathSignal syscall.Signal
	// notifyHook, when set (tests), is called with each notify line
	// before it is passed on.
	notifyHook func(line string)
}

// spawn starts one instance of svc: stdin /dev/null, stdout and stderr into
// the log prefixed with the service name, fd 3 the notify pipe for notify
// services, its own session, svc.UID/GID.
func spawn(r *reaper, log *logger, svc *bootcfg.Service, opts spawnOptions) (*proc, error) {
	caps, err := svc.CapabilityNumbers()
	if err != nil {
		return nil, err
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer outW.Close()
	files := []uintptr{devnull.Fd(), outW.Fd(), outW.Fd()}
	env := append([]string(nil), svc.Env...)
	if !hasEnv(env, "PATH") {
		env = append(env, "PATH=/bin:/sbin:/usr/bin:/usr/sbin")
	}
	var notifyR *os.File
	// Notify services report readiness on it; one-shot services may
	// send STATUS= notes before they exit.
	if svc.Readiness == bootcfg.ReadyNotify || svc.Readiness == bootcfg.ReadyExit {
		var notifyW *os.File
		notifyR, notifyW, err = os.Pipe()
		if err != nil {
			outR.Close()
			return nil, err
		}
		defer notifyW.Close()
		files = append(files, notifyW.Fd())
		env = append(env, ready.Env+"=3")
	}
	sys := &syscall.SysProcAttr{Setsid: true, Pdeathsig: opts.deathSignal}
	// Outside PID 1 as an ordinary user, "root" (0/0) means "as myself".
	asSelf := os.Getuid() != 0 && svc.UID == 0 && svc.GID == 0
	if !asSelf && (svc.UID != uint32(os.Getuid()) || svc.GID != uint32(os.Getgid())) {
		sys.Credential = &syscall.Credential{Uid: svc.UID, Gid: svc.GID, Groups: []uint32{}}
		// Ambient capabilities survive the switch to svc.UID and the exec
		// (the kernel keeps them only for a non-root, non-setuid binary).
		sys.AmbientCaps = caps
	}
	argv := append([]string{svc.Binary}, svc.Args...)
	pid, exit, err := startNice(log, r, svc, argv, &syscall.ProcAttr{Dir: "/", Env: env, Files: files, Sys: sys})
	if err != nil {
		outR.Close()
		if notifyR != nil {
			notifyR.Close()
		}
		return nil, fmt.Errorf("start %s: %w", svc.Binary, err)
	}
	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		copyOutput(log, svc.Name, outR)
	}()
	p := &proc{pid: pid, exit: exit, outDone: outDone}
	if notifyR != nil {
		ch := make(chan string, 32)
		p.notifyDone = make(chan struct{})
		go readNotify(log, notifyR, ch, p.notifyDone, opts.notifyHook)
		p.notify, p.notifyR = ch, notifyR
	}
	return p, nil
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return true
		}
	}
	return false
}

// copyOutput logs each line a service writes, as "<name>: line".
func copyOutput(log *logger, name string, r *os.File) {
	defer r.Close()
	defer func() {
		if p := recover(); p != nil {
			log.Printf("PANIC copying output of %s: %v", name, p)
		}
	}()
	br := bufio.NewReaderSize(r, 4096)
	for {
		line, _, err := br.ReadLine()
		if len(line) > 0 {
			log.line(name + ": " + string(line))
		}
		if err != nil {
			return
		}
	}
}

// maxNotifyLine bounds a notify line: a longer one is passed on cut.
const maxNotifyLine = 4096

// flushMark is what readNotify passes after a flush (flushNotify): no
// line can be it, lines are split at "\n".
const flushMark = "\n"

// readNotify passes the lines of a notify pipe to ch, each one, until the
// pipe ends or done is closed (the supervisor has stopped listening). It
// never drops a line while the supervisor listens (a lost READY=1 would
// get a healthy service killed at its readiness timeout), and a line too
// long is passed on cut to maxNotifyLine bytes, the reading going on; an
// unterminated last line is passed on at the end of the pipe.
//
// A read deadline set on r (flushNotify, at the readiness timeout) asks
// for a flush: readNotify passes on every line the pipe holds at that
// moment without waiting for more, then flushMark, and reads on.
func readNotify(log *logger, r *os.File, ch chan<- string, done <-chan struct{}, hook func(string)) {
	defer r.Close()
	defer close(ch)
	defer func() {
		if p := recover(); p != nil {
			log.Printf("PANIC reading a notify pipe: %v", p)
		}
	}()
	send := func(line string) bool {
		if hook != nil {
			hook(line)
		}
		select {
		case ch <- line:
			return true
		case <-done:
			return false
		}
	}
	var lines lineSplitter
	buf := make([]byte, maxNotifyLine)
	for {
		n, err := r.Read(buf)
		if n > 0 && !lines.feed(buf[:n], send) {
			return
		}
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			if r.SetReadDeadline(time.Time{}) != nil {
				return
			}
			if !drainPipe(r, buf, func(b []byte) bool { return lines.feed(b, send) }) || !send(flushMark) {
				return
			}
		default: // the end of the pipe (or a read error: the same to init)
			if rest, ok := lines.rest(); ok {
				send(rest)
			}
			return
		}
	}
}

// drainPipe passes what the pipe r holds now to feed, reading without
// waiting (r is non-blocking: os.Pipe makes it so, and nothing calls its
// Fd), until the pipe is empty or at its end. It returns false when feed
// does.
func drainPipe(r *os.File, buf []byte, feed func([]byte) bool) bool {
	rc, err := r.SyscallConn()
	if err != nil {
		return true
	}
	for {
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, rerr = unix.Read(int(fd), buf)
			return true // one attempt: never wait for more
		}); err != nil {
			return true
		}
		if rerr == unix.EINTR {
			continue
		}
		if n <= 0 { // empty (EAGAIN) or the end: the next Read tells
			return true
		}
		if !feed(buf[:n]) {
			return false
		}
	}
}

// lineSplitter cuts a byte stream into lines without their "\n" (and a
// "\r" before it), keeping at most maxNotifyLine bytes of each.
type lineSplitter struct {
	line []byte
}

// feed splits b, passing each complete line to send; false when send
// returns false.
func (l *lineSplitter) feed(b []byte, send func(string) bool) bool {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		part := b
		if i >= 0 {
			part = b[:i]
		}
		if room := maxNotifyLine - len(l.line); len(part) > room {
			l.line = append(l.line, part[:room]...)
		} else {
			l.line = append(l.line, part...)
		}
		if i < 0 {
			return true
		}
		b = b[i+1:]
		text := string(bytes.TrimSuffix(l.line, []byte{'\r'}))
		l.line = l.line[:0]
		if !send(text) {
			return false
		}
	}
	return true
}

// rest is an unterminated last line, if there is one.
func (l *lineSplitter) rest() (string, bool) {
	if len(l.line) == 0 {
		return "", false
	}
	return string(bytes.TrimSuffix(l.line, []byte{'\r'})), true
}

// startNice starts the service with its Nice value. Nice is per thread on
// Linux and a new process inherits the value of the thread that forks it:
// init sets it on its own locked thread around the fork, so the service
// has it from its first instruction and every thread it makes inherits
// it (a setpriority on the child's pid afterwards would miss the threads
// the Go runtime has already started). A value the kernel refuses (not
// root) is logged and the service starts at init's own priority.
func startNice(log *logger, r *reaper, svc *bootcfg.Service, argv []string, attr *syscall.ProcAttr) (int, <-chan unix.WaitStatus, error) {
	if svc.Nice == 0 {
		return r.start(svc.Binary, argv, attr)
	}
	if os.Geteuid() != 0 {
		// Without privilege init could not take its thread back from a
		// raised value.
		log.Printf("%s: nice %d not applied: init is not root", svc.Name, svc.Nice)
		return r.start(svc.Binary, argv, attr)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// getpriority(2) returns 20 - nice.
	raw, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
	if err != nil {
		log.Printf("%s: nice %d not applied: getpriority: %v", svc.Name, svc.Nice, err)
		return r.start(svc.Binary, argv, attr)
	}
	own := 20 - raw
	if err := unix.Setpriority(unix.PRIO_PROCESS, 0, svc.Nice); err != nil {
		log.Printf("%s: nice %d not applied: %v", svc.Name, svc.Nice, err)
		return r.start(svc.Binary, argv, attr)
	}
	defer func() {
		if err := unix.Setpriority(unix.PRIO_PROCESS, 0, own); err != nil {
			log.Printf("restoring init's nice %d after starting %s: %v", own, svc.Name, err)
		}
	}()
	return r.start(svc.Binary, argv, attr)
}

// terminate stops a running process at shutdown: SIGTERM, StopGrace,
// SIGKILL.
func (s *service) terminate(p *proc) {
	log := s.sv.log
	name := s.cfg.Name
	log.Printf("stopping %s", name)
	start := time.Now()
	signalGroup(p.pid, unix.SIGTERM)
	t := time.NewTimer(s.sv.grace)
	defer t.Stop()
	var ws unix.WaitStatus
	select {
	case ws = <-p.exit:
		// The rest of its group had the SIGTERM too: what is left of it
		// gets the rest of the grace, then SIGKILL.
		waitGroup(p.pid, t.C)
		s.killLeftovers(p.pid)
	case <-t.C:
		log.Printf("%s: still running after %s, sending SIGKILL", name, short(s.sv.grace))
		signalGroup(p.pid, unix.SIGKILL)
		select {
		case ws = <-p.exit:
		case <-time.After(killWait):
			log.Printf("%s: pid %d did not die after SIGKILL, giving up on it", name, p.pid)
		}
	}
	s.mu.Lock()
	s.lastExit = exitString(ws)
	s.mu.Unlock()
	log.Printf("%s stopped (%s)", name, secs(time.Since(start)))
	s.set(initstatus.StateStopped, "", 0)
}

// killLeftovers kills what is left of the process group of a service
// whose main process (pid, the group's leader) has exited and been
// reaped: children it started and did not take with it. Left running
// they would hold its sockets, locks and files against the next
// instance, or outlive a stop. Only the group is signalled, never pid
// itself: that number is free for reuse now, but not while a process of
// the group still exists.
func (s *service) killLeftovers(pid int) {
	if unix.Kill(-pid, unix.SIGKILL) == nil {
		s.sv.log.Printf("%s: killed the processes it left behind (process group %d)", s.cfg.Name, pid)
	}
}

// waitGroup waits until process group pgid is gone or deadline fires.
func waitGroup(pgid int, deadline <-chan time.Time) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for unix.Kill(-pgid, 0) == nil {
		select {
		case <-deadline:
			return
		case <-tick.C:
		}
	}
}

// signalGroup signals the service's process group (it is a session
// leader), falling back to the process itself.
func signalGroup(pid int, sig syscall.Signal) {
	if err := unix.Kill(-pid, sig); err != nil {
		unix.Kill(pid, sig)
	}
}
