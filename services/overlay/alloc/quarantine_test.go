package alloc

import (
	"path/filepath"
	"testing"
	"time"
)

// TestPinRevertTakesOwnQuarantinedAddress: an asset whose pin is changed
// and then changed back (an edit reverted) gets its own quarantined
// address back, even though it holds two quarantine entries by then. It
// was refused as "taken (quarantined ..., released by asset "a")": only
// the asset's last-listed quarantine entry counted as its own.
func TestPinRevertTakesOwnQuarantinedAddress(t *testing.T) {
	a := open(t, filepath.Join(t.TempDir(), "alloc.cbor"))
	cfg := Config{Quarantine: time.Hour}
	apply := func(pin string, now time.Time) {
		t.Helper()
		if _, err := a.Apply(cfg, []Request{{Asset: "a", Zone: "z", Pinned: ip(pin)}, {Asset: "b", Zone: "z"}}, now); err != nil {
			t.Fatalf("pin a to %s: %v", pin, err)
		}
		if got := addrOf(t, a, "a"); got != ip(pin) {
			t.Fatalf("a = %s, want its pin %s", got, pin)
		}
	}
	apply("100.64.7.7", t0)
	apply("100.64.9.9", t0.Add(time.Minute))   // 100.64.7.7 quarantined
	apply("100.64.7.7", t0.Add(2*time.Minute)) // reverted: 100.64.9.9 quarantined too
	if q := a.Quarantined(); len(q) != 1 || q[0].Addr != ip("100.64.9.9") || q[0].Asset != "a" {
		t.Errorf("quarantine after the revert: %v, want only 100.64.9.9 released by a", q)
	}
	// And back again, from a reloaded table (quarantine sorted by address).
	a = open(t, filepath.Join(filepath.Dir(a.path), "alloc.cbor"))
	apply("100.64.9.9", t0.Add(3*time.Minute))
	apply("100.64.7.7", t0.Add(4*time.Minute))

	// Removed with two quarantine entries, the asset comes back unpinned
	// to the address it had last, not to whichever sorts last.
	if _, err := a.Apply(cfg, []Request{{Asset: "b", Zone: "z"}}, t0.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if q := a.Quarantined(); len(q) != 2 {
		t.Fatalf("quarantine after removing a: %v, want both of a's addresses", q)
	}
	if _, err := a.Apply(cfg, []Request{{Asset: "a", Zone: "z"}, {Asset: "b", Zone: "z"}}, t0.Add(6*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := addrOf(t, a, "a"); got != ip("100.64.7.7") {
		t.Errorf("a came back as %s, want the address it had last, 100.64.7.7", got)
	}
}
