package policywatch

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// runLoop runs l in the background, sending each trigger to the returned
// channel; sync marks the file first, as the services do, unless noMark.
// stop ends Run and returns what it returned.
func runLoop(t *testing.T, l Loop, noMark bool) (got <-chan Trigger, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	triggers := make(chan Trigger, 100)
	done := make(chan error, 1)
	go func() {
		done <- l.Run(ctx, func(tr Trigger) {
			if !noMark {
				l.File.Mark()
			}
			triggers <- tr
		})
	}()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Error("Run did not return within 10s of its context ending")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return triggers, stop
}

func next(t *testing.T, got <-chan Trigger, what string) Trigger {
	t.Helper()
	select {
	case tr := <-got:
		return tr
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no sync within 10s", what)
		return 0
	}
}

// quiet fails if sync is called within d (a bounded wait: a spurious sync
// would show up within a few polls).
func quiet(t *testing.T, got <-chan Trigger, d time.Duration, what string) {
	t.Helper()
	select {
	case tr := <-got:
		t.Fatalf("%s: sync(%s), want none", what, tr)
	case <-time.After(d):
	}
}

// A changed file triggers one sync; an unchanged one none, however many
// polls pass; a reload request triggers one at once.
func TestLoopSyncsOnChangeAndReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "applied.cbor")
	replace(t, path, "one")
	f := &File{Path: path}
	f.Mark() // the service's first sync, before Run
	reload := make(chan struct{}, 1)
	got, _ := runLoop(t, Loop{File: f, Poll: 5 * time.Millisecond, Reload: reload}, false)

	quiet(t, got, 200*time.Millisecond, "file untouched")
	replace(t, path, "two")
	if tr := next(t, got, "file replaced"); tr != FileChanged {
		t.Fatalf("file replaced: sync(%s), want %s", tr, FileChanged)
	}
	quiet(t, got, 200*time.Millisecond, "after the change was synced")
	reload <- struct{}{}
	if tr := next(t, got, "reload"); tr != Reload {
		t.Fatalf("reload: sync(%s), want %s", tr, Reload)
	}
	quiet(t, got, 200*time.Millisecond, "after the reload")
}

// Until sync marks the file, the change keeps triggering: a sync that did
// not read the file is retried.
func TestLoopRetriesUntilMarked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "applied.cbor")
	f := &File{Path: path}
	f.Mark()
	got, _ := runLoop(t, Loop{File: f, Poll: 5 * time.Millisecond}, true)
	replace(t, path, "one")
	for i := range 3 {
		if tr := next(t, got, "unmarked change"); tr != FileChanged {
			t.Fatalf("sync %d: %s, want %s", i, tr, FileChanged)
		}
	}
}

// With a repair interval, sync comes without any change; with none it
// never does.
func TestLoopRepairs(t *testing.T) {
	f := &File{Path: filepath.Join(t.TempDir(), "absent.cbor")}
	f.Mark()
	got, _ := runLoop(t, Loop{File: f, Poll: 5 * time.Millisecond, Repair: 20 * time.Millisecond}, false)
	for range 2 {
		if tr := next(t, got, "repair"); tr != Repair {
			t.Fatalf("sync(%s), want %s", tr, Repair)
		}
	}
	got, _ = runLoop(t, Loop{File: f, Poll: 5 * time.Millisecond}, false)
	quiet(t, got, 200*time.Millisecond, "no repair interval")
}

// Run returns nil once its context ends.
func TestLoopStopsWithContext(t *testing.T) {
	f := &File{Path: filepath.Join(t.TempDir(), "absent.cbor")}
	_, stop := runLoop(t, Loop{File: f, Poll: time.Hour}, false)
	if err := stop(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

// Bad intervals are refused with an error naming them, and sync is never
// called.
func TestLoopRefusesBadSettings(t *testing.T) {
	f := &File{Path: "x"}
	for _, c := range []struct {
		l    Loop
		want string
	}{
		{Loop{File: f}, "poll interval 0s"},
		{Loop{File: f, Poll: -time.Second}, "poll interval -1s"},
		{Loop{File: f, Poll: time.Second, Repair: -time.Second}, "repair interval -1s"},
		{Loop{Poll: time.Second}, "no file"},
	} {
		err := c.l.Run(context.Background(), func(Trigger) { t.Error("sync called") })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Run(%+v) = %v, want an error naming %q", c.l, err, c.want)
		}
	}
}

// The trigger names are the services' log words; segment's events carry
// "policy file changed", which `otgate site apply` looks for.
func TestTriggerNames(t *testing.T) {
	for tr, want := range map[Trigger]string{FileChanged: "policy file changed", Reload: "reload requested", Repair: "repair", 0: "trigger(0)"} {
		if got := tr.String(); got != want {
			t.Errorf("Trigger(%d) = %q, want %q", int(tr), got, want)
		}
	}
}

// SIGHUP sent to the process becomes a reload request (and does not end
// the process); two signals give at most two requests, one if they come
// before the first is taken.
func TestOnSignal(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reload := OnSignal(ctx, syscall.SIGHUP)
	for range 2 {
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-reload:
	case <-time.After(10 * time.Second):
		t.Fatal("SIGHUP: no reload request within 10s")
	}
	// The second signal may still be on its way: take at most one more.
	select {
	case <-reload:
	case <-time.After(200 * time.Millisecond):
	}
	select {
	case <-reload:
		t.Fatal("two SIGHUPs gave three reload requests")
	case <-time.After(200 * time.Millisecond):
	}
}
