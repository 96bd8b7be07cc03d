package proxy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/policyreload"
	"github.com/otgate/otgate/plant"
	"github.com/otgate/otgate/site"
)

// TestApplyReloadsTheProxy is the proxy's half of `otgate site apply` on a
// running gate: the proxy decides by the applied policy file (as on the
// appliance) and policyreload asks it, through its admin socket, to take
// a newly stored policy. A file it cannot load is reported as FAILED and
// the old policy stays (the live session goes on); a good one is taken,
// and the live session goes on under its grant's new Modbus rules.
func TestApplyReloadsTheProxy(t *testing.T) {
	l := newLab(t)
	srv := &plant.Server{Tank: plant.NewTank(nil), Unit: 1}
	go srv.Serve(l.listenPlant(t, 502))
	dir := t.TempDir()
	path := filepath.Join(dir, site.AppliedFile)
	store := func(write string) *site.Applied {
		t.Helper()
		src := []byte(strings.Replace(policySite, "WRITE", write, 1))
		s, err := site.Parse("site.yaml", src, site.Options{})
		if err != nil {
			t.Fatal(err)
		}
		doc, err := site.Compile(s, "site.yaml", src)
		if err != nil {
			t.Fatal(err)
		}
		if err := site.Store(dir, doc); err != nil {
			t.Fatal(err)
		}
		a, err := site.Decode(doc)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	first := store("1-2")
	g := newGate(t, l, func(c *Config) { c.LoadPolicy = AppliedPolicyLoader(path) })
	sock := filepath.Join(t.TempDir(), "admin.sock")
	a, err := g.srv.ListenAdmin(sock)
	if err != nil {
		t.Fatal(err)
	}
	go a.Serve()
	t.Cleanup(func() { a.Close() })
	sockets := policyreload.Sockets{Proxy: sock, Segment: filepath.Join(dir, "no-segment.sock")}
	run := func(applied *site.Applied) []policyreload.Outcome {
		t.Helper()
		out := policyreload.Run(context.Background(), sockets, applied, time.Now(), 5*time.Second)
		for _, o := range out {
			t.Logf("%s", o)
		}
		if len(out) != 2 || out[0].Service != "proxy" || out[1].Service != "segment" || out[1].State != policyreload.NotRunning {
			t.Fatalf("outcomes %v: want proxy, then segment not running", out)
		}
		return out
	}

	alice := g.mustLogin("alice")
	c, r, err := tunnel(t, alice, "plc-1", "modbus")
	if err != nil {
		t.Fatal(err)
	}
	exchange := func(req string) string { t.Helper(); return modbusExchange(t, c, req) }
	if got := exchange("0007000000060106000203e8"); got != "0007000000060106000203e8" {
		t.Fatalf("write to register 2 under the first policy answered %s", got)
	}

	// A policy file the proxy cannot load (damaged on disk): FAILED, with
	// what to do; the old policy stays and the session goes on.
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), good...)
	bad[len(bad)-1] ^= 1
	if err := os.WriteFile(path, bad, 0o640); err != nil {
		t.Fatal(err)
	}
	out := run(first)
	if out[0].State != policyreload.Failed || !strings.Contains(out[0].Detail, "old policy stays") ||
		!strings.Contains(out[0].Detail, "otgate sessions reload") || policyreload.Failures(out) != 1 {
		t.Fatalf("reload of a damaged file: %s; want FAILED, the old policy stays, what to do", out[0])
	}
	if got := exchange("0008000000060106000203e7"); got != "0008000000060106000203e7" {
		t.Fatalf("write after the failed reload answered %s: the old policy must stay", got)
	}
	g.waitEvent("policy-reload-failed", "", path)

	// A narrower grant applied: the proxy takes it, and the live session
	// goes on under the new rules (its connection stays up): the write
	// allowed before is refused with the device's exception, recorded.
	second := store("1")
	out = run(second)
	if out[0].State != policyreload.Reloaded || !strings.Contains(out[0].Detail, "0 live sessions ended as no longer allowed, 1 moved to their new rules") ||
		!strings.Contains(out[0].Detail, "site.yaml") || policyreload.Failures(out) != 0 {
		t.Fatalf("reload of the new policy: %s; want reloaded, no session ended, one moved, naming the policy", out[0])
	}
	ev := g.waitEvent(EventSessionRules, "alice", `policy reload: other Modbus rules (grant "engineer-plc") judge its requests from now on`)
	if ev.SessionID != r.Session || ev.Rule != "engineer-plc" {
		t.Errorf("rules event %+v: want session %s, rule engineer-plc", ev, r.Session)
	}
	if got := exchange("0009000000060106000203e7"); got != "000900000003018602" {
		t.Fatalf("write to register 2 under the narrower rules answered %s, want exception 02", got)
	}
	if got := exchange("000a000000060106000103e7"); got != "000a000000060106000103e7" {
		t.Fatalf("write to register 1 under the narrower rules answered %s, want the device's echo", got)
	}
	g.out.mu.Lock()
	logged := g.out.b.String()
	g.out.mu.Unlock()
	if !strings.Contains(logged, "proxy: admin reload (otgate site apply): policy reloaded from "+path) {
		t.Errorf("the proxy's log does not say it reloaded:\n%s", logged)
	}
}
