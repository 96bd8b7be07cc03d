//go:build linux

package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/initstatus"
)

// serveStatus answers init's status protocol on a socket with st (what
// init would say), for the CLI's side of `otgate time`.
func serveStatus(t *testing.T, st *initstatus.Status) string {
	t.Helper()
	return serveStatusFunc(t, func() *initstatus.Status { return st })
}

// serveStatusFunc answers with what st returns at each request.
func serveStatusFunc(t *testing.T, st func() *initstatus.Status) string {
	t.Helper()
	return serveSocket(t, "init.sock", func(c net.Conn) {
		var req initstatus.Request
		if initstatus.DecMode().NewDecoder(c).Decode(&req) == nil {
			initstatus.EncMode().NewEncoder(c).Encode(initstatus.Response{Status: st()})
		}
	})
}

// serveSocket listens on a unix socket named name in a new directory
// and hands each connection to answer, then closes it; it returns the
// socket's path.
func serveSocket(t *testing.T, name string, answer func(net.Conn)) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, name)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			answer(c)
			c.Close()
		}
	}()
	return sock
}

// `otgate time step` approves nothing while the time service is not
// refusing a step: no approval file is left waiting for a later jump.
func TestTimeStepOnlyWhileRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("step is for root")
	}
	sock := serveStatus(t, &initstatus.Status{Services: []initstatus.Service{
		{Name: "timesync", State: "ready", PID: os.Getpid(), Reason: "synchronised: slewed by +0.001s at 2026-11-23T03:00:00Z (192.0.2.2); next poll in 1m4s"}}})
	approval := filepath.Join(t.TempDir(), "step-approved")
	var out bytes.Buffer
	err := timeStep(sock, approval, 0, &out)
	if err == nil || !strings.Contains(err.Error(), "is not refusing a step") {
		t.Fatalf("step while synchronised: %v", err)
	}
	if _, err := os.Stat(approval); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an approval was written while nothing was refused: %v", err)
	}
	sv, err := timesyncRow(sock)
	if err != nil || sv.PID != os.Getpid() {
		t.Fatalf("timesync row: %+v, %v", sv, err)
	}
}

// While the time service refuses, step writes the approval, signals the
// service (SIGHUP) and waits for its next state: a sync, stepped or
// slewed, is success.
func TestTimeStepApprovesAndWaits(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("step is for root")
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP) // this process stands for the service's pid
	defer signal.Stop(hup)
	approval := filepath.Join(t.TempDir(), "step-approved")
	sock := serveStatusFunc(t, func() *initstatus.Status {
		note := "REFUSED offset +7200.001s from 192.0.2.2 (panic threshold 1000s; synchronised earlier this boot) at 2026-11-23T03:00:00Z"
		select {
		case <-hup: // the service polled: it took the approval
			os.Remove(approval)
			hup <- syscall.SIGHUP
		default:
		}
		if len(hup) > 0 {
			note = "synchronised: slewed by +0.2s at 2026-11-23T05:00:00Z (192.0.2.2); next poll in 1m4s"
		}
		return &initstatus.Status{Services: []initstatus.Service{{Name: "timesync", State: "ready", PID: os.Getpid(), Reason: note}}}
	})
	var out bytes.Buffer
	if err := timeStep(sock, approval, 10*time.Second, &out); err != nil {
		t.Fatalf("step: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "approved one step (by ") || !strings.Contains(out.String(), "timesync: synchronised: slewed") {
		t.Fatalf("output:\n%s", out.String())
	}
}
