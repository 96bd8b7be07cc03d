package overlay

import (
	"fmt"
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
