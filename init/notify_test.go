package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/initstatus"
)

// slowWriter is a console that takes its time (a serial line at 115200
// baud while every service starts and logs).
type slowWriter struct {
	w     testWriter
	delay time.Duration
}

func (w slowWriter) Write(b []byte) (int, error) {
	time.Sleep(w.delay)
	return w.w.Write(b)
}

// A service's READY=1 reaches init even when it comes after many other
// notify lines while init is slow to read them (each unknown line is
// logged to a slow console): no line is dropped, so the service is ready,
// not killed at its readiness timeout. A notify line longer than the
// reader's buffer is cut, and the lines after it still arrive.
func TestNotifyLinesNeverDropped(t *testing.T) {
	sh, err := lookPath("sh")
	if err != nil {
		t.Skip(err)
	}
	for _, tc := range []struct{ name, script string }{
		{"burst", `i=0; while [ $i -lt 100 ]; do echo "CHATTER=$i" >&3; i=$((i+1)); done; echo READY=1 >&3; exec sleep 100`},
		{"overlong", `{ printf STATUS=; head -c 100000 /dev/zero | tr '\0' x; echo; } >&3; echo READY=1 >&3; exec sleep 100`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := bootcfg.Service{Name: "chatty", Binary: sh, Args: []string{"-c", tc.script}, Readiness: bootcfg.ReadyNotify,
				Timeout: 20 * time.Second}
			cfg := &bootcfg.Config{Services: []bootcfg.Service{s}}
			if err := cfg.Validate(nil); err != nil {
				t.Fatal(err)
			}
			log := newLogger(slowWriter{newTestWriter(t), 10 * time.Millisecond})
			r := newReaper(log, false)
			r.run()
			sv, err := newSupervisor(cfg, log, r, spawnOptions{deathSignal: syscall.SIGKILL})
			if err != nil {
				t.Fatal(err)
			}
			sv.start()
			t.Cleanup(func() { sv.stopAll(); r.stop() })
			deadline := time.Now().Add(15 * time.Second)
			for sv.byName["chatty"].getState() != initstatus.StateReady {
				if time.Now().After(deadline) || lineIndex(log.Lines(), "init: chatty: not ready after") >= 0 {
					t.Fatalf("READY=1 was lost: state %s", sv.byName["chatty"].getState())
				}
				time.Sleep(20 * time.Millisecond)
			}
			if tc.name == "burst" {
				if n := strings.Count(strings.Join(log.Lines(), "\n"), "unknown notify message"); n != 100 {
					t.Errorf("%d of 100 lines logged", n)
				}
			}
		})
	}
}
