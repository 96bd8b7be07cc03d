package proxy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/plant"
	"github.com/otgate/otgate/services/proxy/wire"
)

// zonedSite grants the engineer role modbus on zone cell (rule
// engineer-cell) and on zone cell2 (rule engineer-cell2); plc-1 sits in
// ZONE at ADDRESS and offers PROTOCOL.
const zonedSite = `site: lab
zones:
  - name: cell
    owner: ot@lab.example
    mode: enforce
    interface: eth1
    subnet: 10.99.0.0/24
    gate_address: 10.99.0.1
  - name: cell2
    owner: ot@lab.example
    mode: enforce
    interface: eth2
    subnet: 10.98.0.0/24
    gate_address: 10.98.0.1
assets:
  - name: plc-1
    zone: ZONE
    address: ADDRESS
    services:
      - protocol: PROTOCOL
  - name: plc-8
    zone: cell
    address: 10.99.0.8
    services:
      - protocol: modbus
  - name: plc-9
    zone: cell2
    address: 10.98.0.9
    services:
      - protocol: modbus
roles:
  - name: engineer
    description: automation engineers
users:
  - name: alice
    roles: [engineer]
grants:
  - name: engineer-cell
    subjects:
      roles: [engineer]
    targets:
      zones: [cell]
    protocols: [modbus]
    modbus:
      units: [1]
      functions: [read-only]
      holding-registers:
        read: ["0-9"]
  - name: engineer-cell2
    subjects:
      roles: [engineer]
    targets:
      zones: [cell2]
    protocols: [modbus]
    modbus:
      units: [1]
      functions: [read-write]
      holding-registers:
        read: ["0-9"]
        write: ["0-9"]
`

// TestReloadEndsSessionsOfAChangedAsset: a reload that moves a live
// session's asset into another zone at another address (the session's
// connection goes to where it was), takes a protocol away from it, or
// removes it ends the session with that reason; a reload that changes
// nothing of it keeps it.
func TestReloadEndsSessionsOfAChangedAsset(t *testing.T) {
	l := newLab(t)
	srv := &plant.Server{Tank: plant.NewTank(nil), Unit: 1}
	go srv.Serve(l.listenPlant(t, 502))
	path := filepath.Join(t.TempDir(), "site.yaml")
	write := func(zone, addr, proto string) {
		t.Helper()
		s := strings.NewReplacer("ZONE", zone, "ADDRESS", addr, "PROTOCOL", proto).Replace(zonedSite)
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("cell", "10.99.0.5", "modbus")
	g := newGate(t, l, func(c *Config) { c.LoadPolicy = SiteFileLoader(path) })
	alice := g.mustLogin("alice")
	read := "0001000000060103000000" + "01" // read holding register 0

	for _, tc := range []struct {
		name                 string
		zone, addr, protocol string
		reason               string
	}{
		{"moved to another zone", "cell2", "10.98.0.5", "modbus", `asset "plc-1" moved (zone "cell" -> "cell2", address 10.99.0.5 -> 10.98.0.5): reconnect`},
		{"new address", "cell", "10.99.0.7", "modbus", `asset "plc-1" moved (address 10.99.0.5 -> 10.99.0.7): reconnect`},
		{"protocol taken away", "cell", "10.99.0.5", "s7", `asset "plc-1" no longer offers modbus`},
		{"removed", "", "", "", `asset "plc-1" no longer in the site file`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			write("cell", "10.99.0.5", "modbus")
			if _, err := g.srv.Reload(); err != nil {
				t.Fatal(err)
			}
			c, r, err := tunnel(t, alice, "plc-1", "modbus")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if r.Rule != "engineer-cell" {
				t.Fatalf("rule %q, want engineer-cell", r.Rule)
			}
			if got := modbusExchange(t, c, read); !strings.HasPrefix(got, "000100000005010302") {
				t.Fatalf("read answered %s", got)
			}
			// Unchanged by a reload of the same file: it goes on.
			if rep, err := g.srv.Reload(); err != nil || rep.Ended != 0 {
				t.Fatalf("Reload of the same file = %d, %v; want no session ended", rep.Ended, err)
			}
			if tc.zone == "" {
				s := strings.NewReplacer("ZONE", "cell", "ADDRESS", "10.99.0.6", "PROTOCOL", "modbus").Replace(zonedSite)
				s = strings.Replace(s, "  - name: plc-1\n", "  - name: plc-2\n", 1)
				if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
					t.Fatal(err)
				}
			} else {
				write(tc.zone, tc.addr, tc.protocol)
			}
			if rep, err := g.srv.Reload(); err != nil || rep.Ended != 1 {
				t.Fatalf("Reload = %d, %v; want 1 session ended", rep.Ended, err)
			}
			waitClosed(t, c, 30*time.Second)
			g.waitEnd(r.Session, tc.reason)
		})
	}
}

// aliceOnPLC1 is a grant more specific than engineer-cell (a user over a
// role, an asset over a zone) with other Modbus rules: holding registers
// 0-9 writable.
const aliceOnPLC1 = `  - name: alice-plc1
    subjects:
      users: [alice]
    targets:
      assets: [plc-1]
    protocols: [modbus]
    modbus:
      units: [1]
      functions: [read-write]
      holding-registers:
        read: ["0-9"]
        write: ["0-9"]
`

// TestReloadMovesASessionToAnotherGrant: a reload after which another
// grant decides a live Modbus session, and can carry it on (the same zone
// mode, no session length bound), moves it there instead of ending it:
// the move is recorded as a handover naming both grants and the policy
// reload, the session's connection stays up, and the next request is
// judged by the new grant's rules (a write the read-only grant refused
// reaches the device). The user's notice stream is told.
func TestReloadMovesASessionToAnotherGrant(t *testing.T) {
	l := newLab(t)
	srv := &plant.Server{Tank: plant.NewTank(nil), Unit: 1}
	go srv.Serve(l.listenPlant(t, 502))
	path := filepath.Join(t.TempDir(), "site.yaml")
	site := strings.NewReplacer("ZONE", "cell", "ADDRESS", "10.99.0.5", "PROTOCOL", "modbus").Replace(zonedSite)
	if err := os.WriteFile(path, []byte(site), 0o600); err != nil {
		t.Fatal(err)
	}
	g := newGate(t, l, func(c *Config) { c.LoadPolicy = SiteFileLoader(path) })
	alice := g.mustLogin("alice")
	notes, _ := streamNotices(openNotices(t, alice))
	c, r, err := tunnel(t, alice, "plc-1", "modbus")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r.Rule != "engineer-cell" {
		t.Fatalf("rule %q, want engineer-cell", r.Rule)
	}
	if got := modbusExchange(t, c, "000100000006010600010007"); got != "000100000003018601" {
		t.Fatalf("write of holding 1 under engineer-cell (read-only) answered %s, want exception 01", got)
	}
	if err := os.WriteFile(path, []byte(site+aliceOnPLC1), 0o600); err != nil {
		t.Fatal(err)
	}
	if rep, err := g.srv.Reload(); err != nil || rep != (Reloaded{Moved: 1}) {
		t.Fatalf("Reload = %+v, %v; want no session ended, one moved", rep, err)
	}
	ev := g.waitEvent(EventSessionHandover, "alice", `policy reload: grant "alice-plc1" decides the session now instead of "engineer-cell"`)
	if ev.SessionID != r.Session || ev.Rule != "alice-plc1" || !strings.Contains(ev.Reason, `; other Modbus rules (grant "alice-plc1") judge its requests from now on`) {
		t.Errorf("handover event %+v: want session %s, rule alice-plc1, the rules' change named", ev, r.Session)
	}
	if got := modbusExchange(t, c, "000200000006010600010007"); got != "000200000006010600010007" {
		t.Fatalf("write of holding 1 under alice-plc1 answered %s, want the device's echo", got)
	}
	n := nextNotice(t, notes, 10*time.Second, "the rules notice")
	for n.Kind != wire.NoticeRules {
		n = nextNotice(t, notes, 10*time.Second, "the rules notice")
	}
	if n.Session != r.Session || n.Rule != "alice-plc1" || n.Reason != `other Modbus rules (grant "alice-plc1") judge its requests from now on` {
		t.Errorf("rules notice %+v: want session %s, rule alice-plc1, what changed", n, r.Session)
	}
	// The grant goes again: engineer-cell takes the session back, with
	// its read-only rules.
	if err := os.WriteFile(path, []byte(site), 0o600); err != nil {
		t.Fatal(err)
	}
	if rep, err := g.srv.Reload(); err != nil || rep.Ended != 0 {
		t.Fatalf("second Reload = %d, %v; want no session ended", rep.Ended, err)
	}
	if got := modbusExchange(t, c, "000300000006010600010008"); got != "000300000003018601" {
		t.Fatalf("write of holding 1 back under engineer-cell answered %s, want exception 01", got)
	}
}
