package proxy

import (
	"encoding/hex"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/plant"
)

const policySite = `site: lab
zones:
  - name: cell
    owner: ot@lab.example
    mode: enforce
    interface: eth1
    subnet: 10.99.0.0/24
    gate_address: 10.99.0.1
assets:
  - name: plc-1
    zone: cell
    address: 10.99.0.5
    services:
      - protocol: modbus
roles:
  - name: engineer
    description: automation engineers
users:
  - name: alice
    roles: [engineer]
grants:
  - name: engineer-plc
    subjects:
      roles: [engineer]
    targets:
      assets: [plc-1]
    protocols: [modbus]
    modbus:
      units: [1]
      functions: [read-write]
      holding-registers:
        read: ["0-9"]
        write: ["WRITE"]
`

// TestSitePolicyReload runs the proxy on the real policy compiler and a
// real site file: a Modbus session is judged by the grant's rules; a
// reload that changes those rules moves it to them (its connection up), a
// bad file is refused with file:line, and a reload that removes the grant
// ends the session and refuses new ones.
func TestSitePolicyReload(t *testing.T) {
	l := newLab(t)
	srv := &plant.Server{Tank: plant.NewTank(nil), Unit: 1}
	go srv.Serve(l.listenPlant(t, 502))
	path := filepath.Join(t.TempDir(), "site.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(strings.Replace(policySite, "WRITE", "1-2", 1))
	g := newGate(t, l, func(c *Config) { c.LoadPolicy = SiteFileLoader(path) })
	alice := g.mustLogin("alice")

	c, r, err := tunnel(t, alice, "plc-1", "modbus")
	if err != nil {
		t.Fatal(err)
	}
	if r.Rule != "engineer-plc" {
		t.Fatalf("rule %q, want engineer-plc", r.Rule)
	}
	exchange := func(req string) string { t.Helper(); return modbusExchange(t, c, req) }
	if got := exchange("0007000000060106000103e8"); got != "0007000000060106000103e8" {
		t.Fatalf("allowed write answered %s", got)
	}
	if got := exchange("0008000000060106000303e8"); got != "00080000000301860"+"2" {
		t.Fatalf("write outside the grant answered %s, want exception 02", got)
	}

	// A typo keeps the old policy and names the line.
	write(strings.Replace(strings.Replace(policySite, "WRITE", "1-2", 1), "roles: [engineer]\ngrants", "roles: [engineer]\n    colour: blue\ngrants", 1))
	if _, err := g.srv.Reload(); err == nil || !strings.Contains(err.Error(), "site.yaml:") {
		t.Fatalf("reload of a bad file: %v", err)
	}
	if got := exchange("0009000000060106000103e7"); got != "0009000000060106000103e7" {
		t.Fatalf("write after a failed reload answered %s", got)
	}

	// Narrower write range under the same grant: the session goes on
	// under it; a write the old rules let through is refused.
	write(strings.Replace(policySite, "WRITE", "1", 1))
	if rep, err := g.srv.Reload(); err != nil || rep.Ended != 0 {
		t.Fatalf("Reload = %d, %v; want no session ended", rep.Ended, err)
	}
	if got := exchange("000a000000060106000203e8"); got != "000a00000003018602" {
		t.Fatalf("write to register 2 after the narrowing answered %s, want exception 02", got)
	}
	if got := exchange("000b000000060106000103e8"); got != "000b000000060106000103e8" {
		t.Fatalf("write to register 1 after the narrowing answered %s", got)
	}

	// Grant removed: the live session ends, and a new one is refused
	// with the policy's reason.
	write(policySite[:strings.Index(policySite, "grants:")])
	if rep, err := g.srv.Reload(); err != nil || rep.Ended != 1 {
		t.Fatalf("Reload without the grant = %d, %v; want 1 session ended", rep.Ended, err)
	}
	waitClosed(t, c, 30*time.Second)
	g.waitEnd(r.Session, "no longer allowed")
	_, _, err = tunnel(t, alice, "plc-1", "modbus")
	if err == nil {
		t.Fatal("tunnel allowed without a grant")
	}
	t.Logf("refusal without a grant: %v", err)
}

// modbusExchange sends one Modbus/TCP request (hex) on c and returns the
// whole response (MBAP header and PDU, hex).
func modbusExchange(t *testing.T, c net.Conn, req string) string {
	t.Helper()
	b, _ := hex.DecodeString(req)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 6)
	if _, err := io.ReadFull(c, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[4])<<8|int(hdr[5]))
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(append(hdr, body...))
}
