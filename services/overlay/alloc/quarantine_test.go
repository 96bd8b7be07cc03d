package alloc

import (
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
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

// TestQuarantineTooLongIsRefused: a quarantine whose end lies past what
// the state file can hold (Unix nanoseconds end in 2262; the site file
// lets "2500000h", 285 years, through) wrapped to a date in the past on
// disk, so the quarantine ended at the next reload. It is now a clear
// error, and one up to the limit survives a reload.
func TestQuarantineTooLongIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alloc.cbor")
	a := open(t, path)
	two := []Request{{Asset: "a", Zone: "z"}, {Asset: "b", Zone: "z"}}
	_, err := a.Apply(Config{Quarantine: 2500000 * time.Hour}, two, t0)
	if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "quarantine 2500000h0m0s is longer than 36500 days") {
		t.Errorf("quarantine of 285 years: err = %v, want a refusal naming it", err)
	}
	if len(a.Table()) != 0 {
		t.Errorf("a refused Apply changed the table: %v", a.Table())
	}

	cfg := Config{Quarantine: MaxQuarantine}
	if _, err := a.Apply(cfg, two, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(cfg, two[1:], t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	again := open(t, path)
	if _, err := again.Apply(cfg, two[1:], t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if held := again.Quarantined(); len(held) != 1 || held[0].Asset != "a" || !held[0].Until.Equal(t0.Add(time.Minute+MaxQuarantine)) {
		t.Errorf("quarantine of 100 years after a reload: %v, want a's address held until %s", held, t0.Add(time.Minute+MaxQuarantine))
	}
}

// TestPrefixChangeAfterQuarantineEnds: the overlay prefix may change once
// no asset uses it and the released addresses' quarantine has ended. An
// edit that removed the assets and changed the prefix at once was refused
// (rightly) during the quarantine, and then for ever: the ended
// quarantine entries still counted, and only an Apply that succeeded
// could drop them.
func TestPrefixChangeAfterQuarantineEnds(t *testing.T) {
	a := open(t, filepath.Join(t.TempDir(), "alloc.cbor"))
	cfg := Config{Quarantine: time.Hour}
	if _, err := a.Apply(cfg, []Request{{Asset: "a", Zone: "z"}}, t0); err != nil {
		t.Fatal(err)
	}
	moved := Config{Quarantine: time.Hour, Prefix: netip.MustParsePrefix("198.18.0.0/16")}
	_, err := a.Apply(moved, nil, t0.Add(time.Minute))
	if !errors.Is(err, ErrPrefixChanged) || !strings.Contains(err.Error(), "while 1 assets and 0 quarantined addresses") {
		t.Fatalf("assets still there: err = %v", err)
	}
	if _, err := a.Apply(cfg, nil, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	_, err = a.Apply(moved, nil, t0.Add(30*time.Minute))
	if !errors.Is(err, ErrPrefixChanged) || !strings.Contains(err.Error(), "while 0 assets and 1 quarantined addresses use the old prefix") ||
		!strings.Contains(err.Error(), "the last quarantine ends at 2026-12-01T01:02:00Z") {
		t.Fatalf("during the quarantine: err = %v", err)
	}
	diff, err := a.Apply(moved, []Request{{Asset: "b", Zone: "z"}}, t0.Add(2*time.Hour))
	if err != nil {
		t.Fatalf("after the quarantine ended: %v", err)
	}
	if gate, p := a.Gate(); p != moved.Prefix || gate != ip("198.18.0.1") || addrOf(t, a, "b") != ip("198.18.0.2") || len(a.Quarantined()) != 0 {
		t.Errorf("after the change: prefix %s gate %s table %v quarantine %v", p, gate, a.Table(), a.Quarantined())
	}
	if len(diff.Expired) != 1 || diff.Expired[0].Addr != ip("100.64.0.2") {
		t.Errorf("diff.Expired = %v, want the old 100.64.0.2", diff.Expired)
	}
}
