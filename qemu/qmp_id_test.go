package qemu

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A reply that comes after its command gave up (its context ended) is
// stale: the next command must get its own reply, matched by id, not the
// late one that happens to come first.
func TestQMPLateReplyIsNotTheNextCommandsAnswer(t *testing.T) {
	firstGaveUp := make(chan struct{})
	sock := fakeQMP(t, func(c net.Conn) {
		c.Write([]byte(`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}}` + "\r\n"))
		r := bufio.NewReader(c)
		var slow string // the request left unanswered
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch {
			case strings.Contains(line, `"qmp_capabilities"`):
				answerQMP(t, c, line, `"return": {}`)
			case strings.Contains(line, `"slow"`):
				slow = line
			case strings.Contains(line, `"fast"`):
				// The late reply to slow first, then fast's own: an
				// answer taken by order is slow's.
				<-firstGaveUp
				answerQMP(t, c, slow, `"return": "for slow"`)
				answerQMP(t, c, line, `"return": "for fast"`)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := dialQMP(ctx, sock, func() bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	defer q.close()
	sctx, scancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = q.execute(sctx, "slow", nil)
	scancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow: %v, want its deadline exceeded", err)
	}
	close(firstGaveUp)
	got, err := q.execute(ctx, "fast", nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != `"for fast"` {
		t.Fatalf("fast got %s, want \"for fast\" (the late reply to slow was taken for its answer)", got)
	}
	q.mu.Lock()
	dropped := q.dropped
	q.mu.Unlock()
	if len(dropped) != 1 || string(dropped[0].Return) != `"for slow"` {
		t.Fatalf("dropped replies %+v, want slow's late one", dropped)
	}
}

// A real QEMU echoes the id of each command: the client gets its replies
// (a QEMU that did not would leave every command waiting).
func TestQMPIDsWithRealQEMU(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("no qemu-system-x86_64")
	}
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	cmd := exec.Command(bin, "-machine", "none", "-nodefaults", "-nographic", "-S",
		"-qmp", "unix:"+sock+",server=on,wait=off")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	alive := func() bool {
		select {
		case <-exited:
			return false
		default:
			return true
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := dialQMP(ctx, sock, alive)
	if err != nil {
		t.Fatal(err)
	}
	defer q.close()
	for range 3 {
		got, err := q.execute(ctx, "query-status", nil)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(got), `"prelaunch"`) {
			t.Fatalf("query-status: %s, want the status of a QEMU started with -S", got)
		}
	}
	if _, err := q.execute(ctx, "no-such-command", nil); err == nil || !strings.Contains(err.Error(), "CommandNotFound") {
		t.Fatalf("no-such-command: %v, want QEMU's CommandNotFound", err)
	}
	q.mu.Lock()
	dropped := q.dropped
	q.mu.Unlock()
	if len(dropped) != 0 {
		t.Fatalf("replies dropped: %+v", dropped)
	}
}

// A QMP socket that accepts but never greets (a stopped or stuck QEMU)
// must not hold dialQMP past its context: Start's caller (make run's
// Ctrl-C) cancels it.
func TestQMPDialWithoutGreetingEndsWithContext(t *testing.T) {
	hold, connected := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(hold) })
	sock := fakeQMP(t, func(c net.Conn) { <-hold })
	qmpConnectedHook = func() { close(connected) }
	t.Cleanup(func() { qmpConnectedHook = nil })
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		_, err := dialQMP(ctx, sock, func() bool { return true })
		res <- err
	}()
	<-connected // dialQMP waits for the greeting
	cancel()
	select {
	case err := <-res:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("dialQMP: %v, want context canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("dialQMP still waits for the greeting 10 s after its context was cancelled")
	}
}
