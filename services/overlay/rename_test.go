package overlay

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRenamedOverlayRefusalSaysHowToRepair: the overlay interface
// renamed, or renamed and renamed back, is not repaired by the service
// (a renamed interface carries no mark of the overlay's, and the address
// the kernel relabels with the bare interface name looks like one added
// by hand), but the refusal says exactly what to run, and running it
// repairs the overlay at once. It said "remove it by hand" for the
// relabelled address, and nothing but the collision for the renamed
// interface.
func TestRenamedOverlayRefusalSaysHowToRepair(t *testing.T) {
	h := newNetNS(t)
	kind := linkKind(t, h)
	dir := t.TempDir()
	lab := &eventLab{t: t, h: h, kind: kind, sock: filepath.Join(dir, "run", "overlay.sock"), log: &logBook{t: t}}
	storePolicy(t, filepath.Join(dir, "policy"), asset("plc-1", "cell-1", "10.10.1.10", "")+asset("plc-2", "cell-1", "10.10.1.11", ""))
	tune := func(s *Service) { s.Repair = time.Hour; s.Logf = lab.log.logf }
	lab.r = startWith(t, h, kind, dir, tune)
	lab.waitRepaired("at start", 10*time.Second)

	// Renamed: the collision names the command that repairs it.
	l := lab.link()
	if err := h.LinkSetDown(l); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetName(l, "renamed0"); err != nil {
		t.Fatal(err)
	}
	hint := `overlay: interface renamed0 carries addresses labelled "renamed0:ov", as the overlay interface otg-overlay renamed to renamed0 would: if it is, delete it and the overlay recreates otg-overlay with its endpoints at once: ip link del renamed0`
	s := waitSnapshot(t, lab.sock, "the rename refused", func(s *Snapshot) bool { return strings.Contains(s.Error, "overlaps interface renamed0") })
	if !strings.Contains(s.Error, hint) {
		t.Errorf("refusal of the renamed interface:\n%s\nwant it to hold:\n%s", s.Error, hint)
	}
	renamed, err := h.LinkByName("renamed0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkDel(renamed); err != nil { // what the hint says
		t.Fatal(err)
	}
	lab.waitRepaired("after ip link del renamed0", 10*time.Second)
	waitSnapshot(t, lab.sock, "no error", func(s *Snapshot) bool { return s.Error == "" })

	// Renamed and renamed back (the service stopped meanwhile, so it
	// cannot put an interface of its own in the way): the kernel gives the
	// first address the bare interface name as label.
	lab.r.stop()
	l = lab.link()
	if err := h.LinkSetDown(l); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetName(l, "renamed0"); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetName(l, DefaultLink); err != nil {
		t.Fatal(err)
	}
	if got := addrsOn(t, h, DefaultLink); len(got) != 3 || got[0] != (labelled{"100.64.0.1/32", DefaultLink}) {
		t.Fatalf("after the rename back the link carries %v, want 100.64.0.1/32 labelled %s first", got, DefaultLink)
	}
	lab.r = startWith(t, h, kind, dir, tune)
	want := `overlay: 100.64.0.1/32 on otg-overlay carries label "otg-overlay", not "otg-overlay:ov" (the kernel gives that label to the first address of an interface renamed and renamed back; ` +
		"`ip addr add` without a label gives it too): not owned by the overlay service; remove it to let the overlay use it: ip addr del 100.64.0.1/32 dev otg-overlay (the overlay puts it back with its own label at once)"
	s = waitSnapshot(t, lab.sock, "the relabelled address refused", func(s *Snapshot) bool { return s.Error != "" })
	if s.Error != want {
		t.Errorf("refusal of the relabelled address:\n got %s\nwant %s", s.Error, want)
	}
	ad := owned32("100.64.0.1")
	ad.Label = "" // as `ip addr del` sends it
	if err := h.AddrDel(lab.link(), ad); err != nil {
		t.Fatal(err)
	}
	lab.waitRepaired("after ip addr del 100.64.0.1/32 dev otg-overlay", 10*time.Second)
	waitSnapshot(t, lab.sock, "no error", func(s *Snapshot) bool { return s.Error == "" })
}
