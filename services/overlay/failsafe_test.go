package overlay

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEndpointsStayUpWhilePolicyFails: while the stored policy cannot be
// applied (here a pin on another asset's address), the interface is
// still reconciled to the last good table. Before, a failed policy
// stopped every sync before the reconcile: an overlay interface deleted
// at runtime stayed gone, and after a reboot (no interface yet) not one
// endpoint came up although the allocator's state was intact.
func TestEndpointsStayUpWhilePolicyFails(t *testing.T) {
	h := newNetNS(t)
	kind := linkKind(t, h)
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "overlay.sock")
	policyDir := filepath.Join(dir, "policy")
	good := asset("plc-1", "cell-1", "10.10.1.10", "") + asset("plc-2", "cell-1", "10.10.1.11", "")
	storePolicy(t, policyDir, good)
	r := start(t, h, kind, dir)
	waitSnapshot(t, sock, "two assets", func(s *Snapshot) bool { return len(s.Entries) == 2 && s.Error == "" })
	const endpoints = "[100.64.0.1 100.64.0.2 100.64.0.3]"
	if got := fmt.Sprint(ownedOn(t, h)); got != endpoints {
		t.Fatalf("link carries %s, want %s", got, endpoints)
	}

	const refusal = "pinned address 100.64.0.3 is taken (asset plc-2)"
	storePolicy(t, policyDir, good+asset("rtu-1", "cell-1", "10.10.1.12", ", overlay: 100.64.0.3"))
	s := waitSnapshot(t, sock, "the refusal", func(s *Snapshot) bool { return strings.Contains(s.Error, refusal) })

	linkBack := func(when string) {
		t.Helper()
		if _, err := h.LinkByName(DefaultLink); err != nil {
			t.Fatalf("%s: the overlay interface was not brought back: %v", when, err)
		}
		if got := fmt.Sprint(ownedOn(t, h)); got != endpoints {
			t.Errorf("%s: link carries %s, want the last good table's %s", when, got, endpoints)
		}
	}

	// Someone deletes the interface; the next sync (a reload here, the
	// repair timer in production) brings it back with the endpoints.
	l, err := h.LinkByName(DefaultLink)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkDel(l); err != nil {
		t.Fatal(err)
	}
	n := s.Syncs
	r.reload <- struct{}{}
	s = waitSnapshot(t, sock, "a sync after the deletion", func(s *Snapshot) bool { return s.Syncs > n })
	if !strings.Contains(s.Error, refusal) || len(s.Entries) != 2 {
		t.Errorf("after the deletion: error %q, %d entries; want the refusal and the 2 entries of the last good table", s.Error, len(s.Entries))
	}
	linkBack("interface deleted at runtime")

	// A reboot with that policy stored: no interface, a new process.
	r.stop()
	if l, err = h.LinkByName(DefaultLink); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkDel(l); err != nil {
		t.Fatal(err)
	}
	start(t, h, kind, dir)
	s = waitSnapshot(t, sock, "first sync after the reboot", func(s *Snapshot) bool { return s.Syncs >= 1 })
	if !strings.Contains(s.Error, refusal) {
		t.Errorf("after the reboot: error %q, want the refusal", s.Error)
	}
	if len(s.Entries) != 2 || s.Gate.String() != "100.64.0.1" {
		t.Errorf("after the reboot the snapshot shows %d entries, gate %s; want the 2 of the persisted table and 100.64.0.1", len(s.Entries), s.Gate)
	}
	linkBack("after a reboot")
}

// TestLostStateFileKeepsEndpoints: the allocator's state file lost on
// its own (the rest of /perm intact) no longer means a fresh allocation:
// the service restores it from its mirror at start, says so, and every
// asset keeps its endpoint, the quarantine too. It used to start from an
// empty table: here plc-3 would have got plc-2's quarantined address.
func TestLostStateFileKeepsEndpoints(t *testing.T) {
	h := newNetNS(t)
	kind := linkKind(t, h)
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "overlay.sock")
	policyDir := filepath.Join(dir, "policy")
	storePolicy(t, policyDir, asset("plc-1", "cell-1", "10.10.1.10", "")+asset("plc-2", "cell-1", "10.10.1.11", "")+asset("plc-3", "cell-1", "10.10.1.12", ""))
	r := start(t, h, kind, dir)
	waitSnapshot(t, sock, "three assets", func(s *Snapshot) bool { return len(s.Entries) == 3 })
	storePolicy(t, policyDir, asset("plc-1", "cell-1", "10.10.1.10", "")+asset("plc-3", "cell-1", "10.10.1.12", ""))
	before := waitSnapshot(t, sock, "plc-2 released", func(s *Snapshot) bool { return len(s.Entries) == 2 && len(s.Quarantined) == 1 })
	r.stop()

	if err := os.Remove(r.svc.StatePath); err != nil {
		t.Fatal(err)
	}
	log := &logBook{t: t}
	startWith(t, h, kind, dir, func(s *Service) { s.Logf = log.logf })
	after := waitSnapshot(t, sock, "first sync after the loss", func(s *Snapshot) bool { return s.Syncs >= 1 })
	if got, want := fmt.Sprint(after.Entries, after.Quarantined), fmt.Sprint(before.Entries, before.Quarantined); got != want {
		t.Errorf("after losing the state file the table is\n %s\nwant the one before\n %s", got, want)
	}
	if !log.has("overlay: alloc: the state file "+r.svc.StatePath+" is missing; restoring it from its mirror", "(2 assets, 1 quarantined addresses)") {
		t.Errorf("the restore was not logged")
	}
	if _, err := os.Stat(r.svc.StatePath); err != nil {
		t.Errorf("the state file was not restored: %v", err)
	}
	if got := fmt.Sprint(ownedOn(t, h)); got != "[100.64.0.1 100.64.0.2 100.64.0.4]" {
		t.Errorf("link carries %s, want the gate, plc-1 and plc-3 as before", got)
	}
}
