//go:build linux

package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otgate/otgate/internal/initstatus"
)

// serveStatus answers init's status protocol on a socket with st (what
// init would say), for the CLI's side of `otgate time`.
func serveStatus(t *testing.T, st *initstatus.Status) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "initsock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "init.sock")
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
			var req initstatus.Request
			if initstatus.DecMode().NewDecoder(c).Decode(&req) == nil {
				initstatus.EncMode().NewEncoder(c).Encode(initstatus.Response{Status: st})
			}
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
