package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/services/proxy/adminapi"
)

// The session list names each session's rule, and says which run in a
// monitor-mode zone (their Modbus requests the rules deny pass).
func TestPrintSessionsShowsMonitorMode(t *testing.T) {
	start := time.Date(2026, 11, 25, 9, 0, 0, 0, time.Local).UnixNano()
	var b bytes.Buffer
	printSessions(&b, []adminapi.Session{
		{ID: "a1", User: "alice", Asset: "plc-1", Protocol: "modbus", Source: "192.0.2.7", Rule: "engineer-plc", Started: start},
		{ID: "b2", User: "bob", Asset: "plc-2", Protocol: "modbus", Source: "192.0.2.8", Rule: "commissioning", Monitor: true, Started: start},
	})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("lines:\n%s", b.String())
	}
	if f := strings.Fields(lines[1]); f[0] != "a1" || f[5] != "engineer-plc" || f[6] != "09:00:00" {
		t.Errorf("alice's row %q: want rule engineer-plc, no mode note", lines[1])
	}
	if f := strings.Fields(lines[2]); f[0] != "b2" || f[5] != "commissioning" || f[6] != "(monitor)" {
		t.Errorf("bob's row %q: want rule commissioning (monitor)", lines[2])
	}
}
