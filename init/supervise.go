package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/initstatus"
	"github.com/otgate/otgate/internal/ready"
	"golang.org/x/sys/unix"
)

// Supervision defaults.
const (
	defaultReadyTimeout = 30 * time.Second
	defaultStopGrace    = 5 * time.Second
	backoffMin          = 250 * time.Millisecond
	backoffMax          = 30 * time.Second
	// backoffReset: a service that ran ready this long before exiting
	// starts again from backoffMin.
	backoffReset = 10 * time.Second
	// killWait is how long a stop waits for a SIGKILLed process to go.
	killWait = 5 * time.Second
)

// supervisor runs the service table.
type supervisor struct {
	cfg    *bootcfg.Config
	log    *logger
	reaper *reaper
	spawn  spawnOptions
	grace  time.Duration
	// Back-off: first delay, cap, and how long a service must have run
	// ready before an exit starts the back-off from the first delay again.
	backoffMin, backoffMax, backoffReset time.Duration
	// readyTimer starts a readiness timer (tests replace it): the
	// channel fires at the timeout, stop stops it.
	readyTimer func(d time.Duration) (c <-chan time.Time, stop func() bool)
	// exitSeen, when set (tests), is called when watch has taken a
	// process's exit, before it drains the notify pipe.
	exitSeen func(name string)

	order  []*service // start order
	byName map[string]*service
}

// service is one row of the table and its current state.
type service struct {
	cfg *bootcfg.Service
	sv  *supervisor

	mu       sync.Mutex
	state    string
	pid      int
	restarts int
	lastExit string
	since    time.Time
	reason   string
	// held: failed on purpose, not by a fault: the service exited
	// bootcfg.ExitNoRestart (e.g. trust in quarantine), or a dependency
	// of it is held. The gate sits in a deliberate fail-closed state, so
	// a held critical service does not stop the watchdog: resetting the
	// board would only repeat the same decision in a loop.
	held bool

	// changed is closed (and replaced) at every change of state: a
	// dependant waiting for this service to be up again watches it.
	changed chan struct{}
	// waitLimit is how long the service may wait for its dependencies
	// (state waiting) and still count as healthy: see waitLimits.
	waitLimit time.Duration

	readyOnce  sync.Once
	readyCh    chan struct{} // closed on the first ready (or done)
	failOnce   sync.Once
	failedCh   chan struct{} // closed when marked failed
	stopOnce   sync.Once
	stopReq    chan struct{} // closed to stop the service
	finished   chan struct{} // closed when its goroutine returned
	startedRun bool
}

func newSupervisor(cfg *bootcfg.Config, log *logger, r *reaper, opts spawnOptions) (*supervisor, error) {
	names, err := cfg.StartOrder()
	if err != nil {
		return nil, err
	}
	sv := &supervisor{cfg: cfg, log: log, reaper: r, spawn: opts, grace: cfg.StopGrace,
		backoffMin: backoffMin, backoffMax: backoffMax, backoffReset: backoffReset,
		readyTimer: func(d time.Duration) (<-chan time.Time, func() bool) {
			t := time.NewTimer(d)
			return t.C, t.Stop
		},
		byName: map[string]*service{}}
	if sv.grace <= 0 {
		sv.grace = defaultStopGrace
	}
	for i := range cfg.Services {
		s := &service{cfg: &cfg.Services[i], sv: sv, state: initstatus.StateWaiting, since: time.Now(), changed: make(chan struct{}),
			readyCh: make(chan struct{}), failedCh: make(chan struct{}), stopReq: make(chan struct{}), finished: make(chan struct{})}
		sv.byName[s.cfg.Name] = s
	}
	for _, n := range names {
		sv.order = append(sv.order, sv.byName[n])
	}
	sv.waitLimits()
	return sv, nil
}

// waitLimits sets each service's waitLimit: the sum, along its longest
// chain of dependencies (itself included), of each service's readiness
// timeout and the longest back-off. That is how long the chain takes to
// come up when every service on it uses its whole readiness timeout once
// after one restart at the longest back-off: a wait longer than that is
// not a slow start any more but a dependency that does not come up
// (stuck, or restarting in a loop the crash-loop rules do not catch).
// The service's own readiness timeout alone is too short a bound: at
// boot the proxy (30 s) waits for trust, whose readiness timeout is
// 120 s. Sums saturate (bootcfg bounds each timeout at load).
func (sv *supervisor) waitLimits() {
	// sv.order has dependencies first.
	for _, s := range sv.order {
		var deps time.Duration
		for _, d := range s.cfg.DependsOn {
			deps = max(deps, sv.byName[d].waitLimit)
		}
		s.waitLimit = addDur(addDur(s.readyTimeout(), sv.backoffMax), deps)
	}
}

// start launches every service's goroutine; each waits for its own
// dependencies, so independent services start in parallel and a dependent
// starts only after its dependencies are ready.
func (sv *supervisor) start() {
	sv.waitLimits() // the back-off may have been tuned since newSupervisor
	for _, s := range sv.order {
		s.startedRun = true
		go s.run()
	}
}

// stopAll stops the services in reverse start order.
func (sv *supervisor) stopAll() {
	for i := len(sv.order) - 1; i >= 0; i-- {
		sv.order[i].stop()
	}
}

// critical returns the critical services.
func (sv *supervisor) critical() []*service {
	var out []*service
	for _, s := range sv.order {
		if s.cfg.Critical {
			out = append(out, s)
		}
	}
	return out
}

// criticalHealthy says whether every critical service is running and
// healthy: ready, done, starting within its readiness timeout (and the
// wait for a SIGKILLed process to go: a process the kill does not end
// stays starting), or waiting for its dependencies within its waitLimit.
// A critical service that waits longer (a dependency that never comes up
// and never fails) is not running, so the gate is not doing its job: it
// is not healthy, and the watchdog resets the board unless it starts
// before then. backoff, unhealthy, failed (unless held) and stopped are
// not healthy.
func (sv *supervisor) criticalHealthy() (bool, string) {
	for _, s := range sv.critical() {
		s.mu.Lock()
		st, since, reason := s.state, s.since, s.reason
		s.mu.Unlock()
		switch st {
		case initstatus.StateReady, initstatus.StateDone:
		case initstatus.StateStarting:
			if limit := addDur(s.readyTimeout(), killWait); time.Since(since) > limit {
				return false, s.cfg.Name + " starting for over " + short(limit) + ", not ready"
			}
		case initstatus.StateWaiting:
			if time.Since(since) > s.waitLimit {
				why := s.cfg.Name + " waiting for over " + short(s.waitLimit)
				if reason != "" {
					why += ": " + reason
				}
				return false, why
			}
		case initstatus.StateFailed:
			if !s.isHeld() {
				return false, s.cfg.Name + " " + st
			}
		default:
			return false, s.cfg.Name + " " + st
		}
	}
	return true, ""
}

// snapshot is the per-service part of the status.
func (sv *supervisor) snapshot() []initstatus.Service {
	var out []initstatus.Service
	for _, s := range sv.order {
		s.mu.Lock()
		out = append(out, initstatus.Service{Name: s.cfg.Name, Critical: s.cfg.Critical, State: s.state, PID: s.pid,
			Restarts: s.restarts, LastExit: s.lastExit, Since: s.since, Reason: s.reason})
		s.mu.Unlock()
	}
	return out
}

func (s *service) isHeld() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

func (s *service) getState() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

func (s *service) set(state, reason string, pid int) {
	s.mu.Lock()
	if s.state != state {
		s.since = time.Now()
		close(s.changed)
		s.changed = make(chan struct{})
	}
	s.state, s.reason, s.pid = state, reason, pid
	s.mu.Unlock()
}

// watchState returns the state, whether the service is held, and a
// channel closed at the next change of state.
func (s *service) watchState() (state string, held bool, changed <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state, s.held, s.changed
}

// isUp says whether a dependant may start beside a service in state st:
// it is running and was ready (ready, or unhealthy since), or a one-shot
// that is done.
func isUp(st string) bool {
	return st == initstatus.StateReady || st == initstatus.StateUnhealthy || st == initstatus.StateDone
}

func (s *service) markReady() { s.readyOnce.Do(func() { close(s.readyCh) }) }

func (s *service) fail(reason string) {
	s.set(initstatus.StateFailed, reason, 0)
	s.failOnce.Do(func() { close(s.failedCh) })
}

// stop asks the service to stop and waits until it has.
func (s *service) stop() {
	s.stopOnce.Do(func() { close(s.stopReq) })
	if s.startedRun {
		<-s.finished
	}
}

func (s *service) readyTimeout() time.Duration {
	if s.cfg.Timeout > 0 {
		return s.cfg.Timeout
	}
	return defaultReadyTimeout
}

// run is the life of one service: wait for dependencies, then start,
// wait for readiness, restart with back-off, until stopped or failed.
func (s *service) run() {
	defer close(s.finished)
	defer func() {
		if p := recover(); p != nil {
			s.sv.log.Printf("PANIC supervising %s (recovered): %v", s.cfg.Name, p)
			s.fail(fmt.Sprintf("supervisor panic: %v", p))
			<-s.stopReq
		}
	}()
	log := s.sv.log
	name := s.cfg.Name
	if !s.waitDeps(false) {
		return
	}
	if p := s.cfg.SkipIfExists; p != "" {
		if _, err := os.Lstat(p); err == nil {
			log.Printf("%s skipped: %s exists", name, p)
			s.set(initstatus.StateDone, "skipped: "+p+" exists", 0)
			s.markReady()
			<-s.stopReq
			return
		} else if !errors.Is(err, fs.ErrNotExist) {
			// Cannot tell: run it (a one-shot that finds its work done
			// says so itself).
			log.Printf("%s: skip condition %s: %v; running it", name, p, err)
		}
	}
	delay := s.sv.backoffMin
	var recent []time.Time // restarts inside the crash-loop window
	// unready counts the starts in a row that ended before the service
	// was ready: start errors, exits before ready, readiness timeouts.
	unready := 0
	for {
		start := time.Now()
		var p *proc
		note, err := prepareDirs(s.cfg)
		if err != nil {
			err = fmt.Errorf("directories: %w", err)
		} else {
			if note != "" {
				log.Printf("%s: %s", name, note)
			}
			p, err = spawn(s.sv.reaper, log, s.cfg, s.sv.spawn)
		}
		var ws unix.WaitStatus
		var exitText string
		readyAt := time.Time{}
		timedOut, readyGone := false, false
		if err != nil {
			log.Printf("%s: %v", name, err)
			exitText = "start error"
		} else {
			s.set(initstatus.StateStarting, "", p.pid)
			if s.cfg.Readiness == bootcfg.ReadyStarted {
				readyAt = time.Now()
				s.becomeReady(start)
			}
			var stopped bool
			ws, readyAt, readyGone, timedOut, stopped = s.watch(p, start, readyAt)
			if stopped {
				return
			}
			exitText = exitString(ws)
			if readyGone {
				log.Printf("%s: READY=1 came with its exit (%s): ready, then exited", name, exitText)
			}
		}
		s.mu.Lock()
		s.lastExit = exitText
		s.mu.Unlock()
		if s.cfg.Readiness == bootcfg.ReadyExit && err == nil && ws.Exited() && ws.ExitStatus() == 0 {
			log.Printf("%s done (%s)", name, secs(time.Since(start)))
			s.set(initstatus.StateDone, "", 0)
			s.markReady()
			<-s.stopReq
			return
		}
		if err == nil && ws.Exited() && ws.ExitStatus() == bootcfg.ExitNoRestart {
			s.mu.Lock()
			note := s.reason
			s.mu.Unlock()
			if note == "" {
				note = fmt.Sprintf("exit status %d: do not restart", bootcfg.ExitNoRestart)
			}
			log.Printf("%s exited (%s), asks not to be restarted: marked failed: %s", name, exitText, note)
			s.mu.Lock()
			s.held = true
			s.mu.Unlock()
			s.fail(note)
			<-s.stopReq
			return
		}
		now := time.Now()
		if !readyAt.IsZero() && now.Sub(readyAt) >= s.sv.backoffReset {
			delay = s.sv.backoffMin
		}
		window := s.sv.cfg.CrashLoop.Window
		keep := recent[:0]
		for _, t := range recent {
			if now.Sub(t) < window {
				keep = append(keep, t)
			}
		}
		recent = keep
		limit := s.sv.cfg.CrashLoop.Restarts
		if limit > 0 && len(recent) >= limit {
			log.Printf("%s exited (%s)", name, exitText)
			log.Printf("%s: crash loop (%d restarts in %s), marked failed", name, len(recent), short(window))
			s.fail(fmt.Sprintf("crash loop: %d restarts in %s, last %s", len(recent), short(window), exitText))
			<-s.stopReq
			return
		}
		// A service that fails slowly (at its readiness timeout, or
		// exiting after a while but before ready) restarts too seldom
		// for the crash-loop window: the crash loop's number of
		// restarts in a row that all ended before ready marks it failed
		// too, like a start limit (systemd's StartLimitBurst counts
		// failed starts, timeouts included), so that it and what waits
		// for it settle instead of retrying for ever.
		if readyAt.IsZero() {
			unready++
		} else {
			unready = 0
		}
		if limit > 0 && unready > limit {
			cause := "exited (" + exitText + ")"
			switch {
			case timedOut:
				cause = "not ready after " + short(s.readyTimeout())
			case err != nil:
				cause = "start error"
			}
			log.Printf("%s exited (%s)", name, exitText)
			log.Printf("%s: never ready: %d starts in a row ended before ready (last: %s), marked failed", name, unready, cause)
			s.fail(fmt.Sprintf("never ready: %d starts in a row ended before ready, last: %s", unready, cause))
			<-s.stopReq
			return
		}
		s.mu.Lock()
		s.restarts++
		n := s.restarts
		s.mu.Unlock()
		recent = append(recent, now)
		log.Printf("%s exited (%s), restart %d in %s", name, exitText, n, short(delay))
		backoffNote := ""
		if readyGone {
			backoffNote = "ready, then exited (" + exitText + ")"
		}
		s.set(initstatus.StateBackoff, backoffNote, 0)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.stopReq:
			t.Stop()
			s.set(initstatus.StateStopped, "", 0)
			return
		}
		delay = min(delay*2, s.sv.backoffMax)
		if !s.waitDeps(true) {
			return
		}
	}
}

// waitDeps waits until every dependency is up at the same time (ready,
// unhealthy or done), before the first start and before every restart:
// a dependant never starts, nor starts again after an exit, while a
// dependency is restarting or has failed (fail closed: the proxy is not
// restarted beside a segment service that is down). A dependency that
// restarts does not stop its running dependants: each reconnects by
// itself (see STATUS), and a cascade would cut their live sessions.
//
// It returns false when the service must not start: stopped (state
// stopped), or a dependency failed (the service is marked failed, held
// when that dependency is held, and stays so until stopped).
func (s *service) waitDeps(restart bool) bool {
	log := s.sv.log
	name := s.cfg.Name
	verb := "started"
	if restart {
		verb = "restarted"
	}
	logged := ""
	// over fires when a critical service has waited longer than its
	// waitLimit: it counts as not healthy from then on (criticalHealthy),
	// and says so once.
	var over <-chan time.Time
	if s.cfg.Critical {
		s.mu.Lock()
		since := s.since
		if s.state != initstatus.StateWaiting {
			since = time.Now() // a restart: waiting from now on
		}
		s.mu.Unlock()
		t := time.NewTimer(s.waitLimit - time.Since(since))
		defer t.Stop()
		over = t.C
	}
	for {
		var wait <-chan struct{}
		for _, d := range s.cfg.DependsOn {
			st, held, changed := s.sv.byName[d].watchState()
			if isUp(st) {
				continue
			}
			if st == initstatus.StateFailed {
				log.Printf("%s: not %s: dependency %s failed", name, verb, d)
				if held {
					s.mu.Lock()
					s.held = true
					s.mu.Unlock()
				}
				s.fail("dependency " + d + " failed")
				<-s.stopReq
				return false
			}
			if logged != d+" "+st {
				// The first start waits silently: every dependant
				// does at boot. The status says what it waits for.
				logged = d + " " + st
				if restart {
					log.Printf("%s: restart waits for %s (%s)", name, d, st)
				}
				s.set(initstatus.StateWaiting, "waiting for "+d+" ("+st+")", 0)
			}
			wait = changed
			break
		}
		if wait == nil {
			return true
		}
		select {
		case <-wait:
		case <-over:
			over = nil
			s.mu.Lock()
			reason := s.reason
			s.mu.Unlock()
			log.Printf("%s: %s for over %s: not healthy (a critical service that does not run stops the watchdog's petting)", name, reason, short(s.waitLimit))
		case <-s.stopReq:
			s.set(initstatus.StateStopped, "", 0)
			return false
		}
	}
}

func (s *service) becomeReady(start time.Time) {
	s.mu.Lock()
	pid := s.pid
	s.mu.Unlock()
	// The CPU time it took to get ready tells a slow start on a busy CPU
	// (all services start at once) from a slow service.
	s.sv.log.Printf("%s ready (%s%s)", s.cfg.Name, secs(time.Since(start)), cpuNote("/proc", pid))
	s.set(initstatus.StateReady, "", pid)
	s.markReady()
}

// watch follows one running process until it exits (returning its status,
// and timedOut when init killed it for not being ready in time) or the
// service is stopped (stopped true, the process is gone).
//
// A READY=1 that init takes only with the exit (drainNotify) makes the
// exit that of a ready service (readyAt is set, readyGone true: a crash
// of a ready service, not a start that ended before ready), but the
// service never becomes ready: it is gone, and a dependant must not
// start beside it.
//
// What a service wrote to its notify pipe before its readiness timeout
// counts: when the timer fires, READY=1 may still be in the pipe or on
// its way from the reader (and select picks at random between a timer
// and a line that are both there), so the lines are flushed first
// (flushNotify), and a service that turns out to have been ready is not
// killed.
func (s *service) watch(p *proc, start, readyAt time.Time) (ws unix.WaitStatus, _ time.Time, readyGone, timedOut, stopped bool) {
	log := s.sv.log
	name := s.cfg.Name
	// fired: the readiness timer has fired; a READY=1 the drain finds
	// then is late.
	fired := false
	var timeout <-chan time.Time
	if readyAt.IsZero() {
		c, stop := s.sv.readyTimer(s.readyTimeout())
		defer stop()
		timeout = c
	}
	defer p.stopNotify()
	notify := p.notify
	exited := func() {
		if s.sv.exitSeen != nil {
			s.sv.exitSeen(name)
		}
		s.killLeftovers(p.pid)
		p.drainOutput(log, name)
		if s.drainNotify(p, notify, readyAt.IsZero() && !fired && s.cfg.Readiness == bootcfg.ReadyNotify) {
			readyAt, readyGone = time.Now(), true
		}
	}
	handle := func(line string) {
		switch {
		case line == ready.MsgReady:
			if readyAt.IsZero() && s.cfg.Readiness == bootcfg.ReadyNotify {
				readyAt = time.Now()
				timeout = nil
				s.becomeReady(start)
			}
		case strings.HasPrefix(line, ready.MsgUnhealthy):
			reason := serviceNote(strings.TrimPrefix(line, ready.MsgUnhealthy))
			if !readyAt.IsZero() {
				log.Printf("%s unhealthy: %s", name, reason)
				s.set(initstatus.StateUnhealthy, reason, p.pid)
			}
		case strings.HasPrefix(line, ready.MsgStatus):
			s.mu.Lock()
			s.reason = serviceNote(strings.TrimPrefix(line, ready.MsgStatus))
			s.mu.Unlock()
		case line == ready.MsgHealthy:
			if s.getState() == initstatus.StateUnhealthy {
				log.Printf("%s healthy again", name)
				s.set(initstatus.StateReady, "", p.pid)
			}
		case line == flushMark: // a flush that flushNotify gave up on
		default:
			log.Printf("%s: unknown notify message %q (ignored)", name, line)
		}
	}
	for {
		select {
		case line, ok := <-notify:
			if !ok {
				notify = nil
				continue
			}
			handle(line)
		case <-timeout:
			timeout, fired = nil, true
			if notify != nil && s.cfg.Readiness == bootcfg.ReadyNotify {
				notify = s.flushNotify(p, notify, handle)
				if !readyAt.IsZero() {
					continue // ready in time
				}
			}
			// An exit that came with the timer is an exit: the pid
			// may already be reaped and free for reuse.
			select {
			case ws = <-p.exit:
				exited()
				return ws, readyAt, readyGone, timedOut, false
			default:
			}
			timedOut = true
			log.Printf("%s: not ready after %s, killing it", name, short(s.readyTimeout()))
			signalGroup(p.pid, unix.SIGKILL)
		case ws = <-p.exit:
			exited()
			return ws, readyAt, readyGone, timedOut, false
		case <-s.stopReq:
			s.terminate(p)
			return ws, readyAt, readyGone, timedOut, true
		}
	}
}

// flushWait bounds a flush of the notify pipe: a service that writes
// without a pause would keep the pipe from ever being empty.
const flushWait = time.Second

// flushNotify hands every notify line the service wrote before now to
// handle: it asks the reader for a flush (a read deadline in the past
// wakes it; see readNotify) and takes lines until the reader's
// flushMark, the end of the pipe (it returns nil then) or flushWait.
func (s *service) flushNotify(p *proc, notify <-chan string, handle func(string)) <-chan string {
	// The other error is a closed pipe (the reader has returned, and the
	// channel ends): poll's "use of closed file", which is not
	// os.ErrClosed.
	if err := p.notifyR.SetReadDeadline(time.Unix(1, 0)); errors.Is(err, os.ErrNoDeadline) {
		s.sv.log.Printf("%s: flushing the notify pipe: %v", s.cfg.Name, err)
	}
	t := time.NewTimer(flushWait)
	defer t.Stop()
	for {
		select {
		case line, ok := <-notify:
			if !ok {
				return nil
			}
			if line == flushMark {
				return notify
			}
			handle(line)
		case <-t.C:
			s.sv.log.Printf("%s: notify pipe not flushed within %s; going on", s.cfg.Name, short(flushWait))
			return notify
		}
	}
}

// maxNote bounds a reason a service gives (STATUS=, HEALTHY=0).
const maxNote = 512

// serviceNote is a reason as a service sent it, trimmed, valid UTF-8 and
// at most maxNote bytes: it goes into the status socket's CBOR answer.
func serviceNote(s string) string { return cleanText(strings.TrimSpace(s), maxNote) }

// drainNotify takes what the process wrote to its notify pipe before it
// exited (the exit can be seen first, and select picks at random between
// an exit and a line that are both there): the process is gone, so all it
// wrote is in the pipe or in the reader, and a flush (flushNotify) hands
// over every line, without a timer that may fire first. It keeps the last
// STATUS= note and says whether READY=1 was among the lines, when
// countReady (a notify service not ready yet, its readiness timer not
// fired): ready, then exited.
func (s *service) drainNotify(p *proc, notify <-chan string, countReady bool) (sawReady bool) {
	if notify == nil {
		return false
	}
	s.flushNotify(p, notify, func(line string) {
		switch {
		case line == ready.MsgReady:
			sawReady = sawReady || countReady
		case strings.HasPrefix(line, ready.MsgStatus):
			s.mu.Lock()
			s.reason = serviceNote(strings.TrimPrefix(line, ready.MsgStatus))
			s.mu.Unlock()
		}
	})
	return sawReady
}
