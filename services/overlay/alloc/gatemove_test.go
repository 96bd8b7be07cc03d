package alloc

import (
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGateMoveQuarantinesOldGate: moving the gate's overlay address
// quarantines the old one like a released endpoint (it was free at once
// and went to the next new asset); a pin on it is refused naming the
// gate; it survives a reload; the gate moving back takes it back; a
// prefix change that keeps the old gate address inside quarantines it
// too, one that leaves it outside does not.
func TestGateMoveQuarantinesOldGate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alloc.cbor")
	a := open(t, path)
	cfg := Config{Quarantine: time.Hour, Gate: ip("100.64.0.1")}
	if _, err := a.Apply(cfg, []Request{{Asset: "a", Zone: "z"}}, t0); err != nil {
		t.Fatal(err)
	}
	cfg.Gate = ip("100.64.0.200")
	diff, err := a.Apply(cfg, []Request{{Asset: "a", Zone: "z"}, {Asset: "b", Zone: "z"}}, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got := addrOf(t, a, "b"); got != ip("100.64.0.3") {
		t.Errorf("b = %s, want 100.64.0.3 (100.64.0.1 was the gate's a moment ago)", got)
	}
	want := Held{Addr: ip("100.64.0.1"), Until: t0.Add(time.Minute + time.Hour)}
	if len(diff.Released) != 1 || diff.Released[0] != want || !diff.Released[0].GateHeld() {
		t.Errorf("released %+v, want %+v", diff.Released, want)
	}

	// A pin on the old gate address is refused while it is quarantined.
	_, err = a.Apply(cfg, []Request{{Asset: "a", Zone: "z"}, {Asset: "b", Zone: "z"}, {Asset: "c", Zone: "z", Pinned: ip("100.64.0.1")}}, t0.Add(2*time.Minute))
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), `asset "c": pinned address 100.64.0.1 is taken (quarantined until 2026-12-01T01:01:00Z, released by the gate (its former overlay address))`) {
		t.Errorf("pin on the old gate address: %v", err)
	}

	// Reloaded, the quarantine is still there; the gate moves back and
	// takes its own address back (not refused as quarantined).
	a = open(t, path)
	if q := a.Quarantined(); len(q) != 1 || q[0] != want {
		t.Fatalf("quarantine after reload: %+v, want %+v", q, want)
	}
	cfg.Gate = ip("100.64.0.1")
	if _, err := a.Apply(cfg, []Request{{Asset: "a", Zone: "z"}, {Asset: "b", Zone: "z"}}, t0.Add(3*time.Minute)); err != nil {
		t.Fatalf("gate back to 100.64.0.1: %v", err)
	}
	q := a.Quarantined()
	if gate, _ := a.Gate(); gate != ip("100.64.0.1") || len(q) != 1 || q[0].Addr != ip("100.64.0.200") || !q[0].GateHeld() {
		t.Errorf("after moving back: gate %s, quarantine %+v; want gate 100.64.0.1, 100.64.0.200 held by the gate", gate, q)
	}

	// Prefix changes (no asset, no quarantine left): the old gate address
	// inside the new prefix is held; outside it, nothing can take it.
	if _, err := a.Apply(cfg, nil, t0.Add(5*time.Hour)); err != nil {
		t.Fatal(err)
	}
	cfg = Config{Quarantine: time.Hour, Prefix: netip.MustParsePrefix("100.64.0.0/15"), Gate: ip("100.65.0.1")}
	if _, err := a.Apply(cfg, []Request{{Asset: "x", Zone: "z"}}, t0.Add(6*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if q := a.Quarantined(); len(q) != 1 || q[0].Addr != ip("100.64.0.1") || !q[0].GateHeld() {
		t.Errorf("after a prefix change keeping the old gate inside: quarantine %+v, want 100.64.0.1", q)
	}
	if got := addrOf(t, a, "x"); got == ip("100.64.0.1") {
		t.Errorf("x got the old gate address %s", got)
	}
	if _, err := a.Apply(cfg, nil, t0.Add(8*time.Hour)); err != nil {
		t.Fatal(err)
	}
	cfg = Config{Quarantine: time.Hour, Prefix: netip.MustParsePrefix("10.99.0.0/16"), Gate: ip("10.99.0.1")}
	if _, err := a.Apply(cfg, nil, t0.Add(9*time.Hour)); err != nil {
		t.Fatalf("prefix change leaving the old gate outside: %v", err)
	}
	if q := a.Quarantined(); len(q) != 0 {
		t.Errorf("quarantine %+v, want none (the old gate is outside the new prefix)", q)
	}
}
