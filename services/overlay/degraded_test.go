package overlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// dummyKind returns the settings that make the service create the
// overlay interface as the appliance does, a dummy, or on a kernel
// without the dummy module an ifb in its place (kindIfb): one interface
// made by name alone, with no peer. A veth pair does not do here: its
// peer, renamed or not, stays in the way of a second pair, so creating
// a second overlay interface fails where a dummy's would succeed.
func dummyKind(t *testing.T, h *netlink.Handle) (standIn LinkKind) {
	t.Helper()
	for _, probe := range []netlink.Link{
		&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "probe0"}},
		&netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: "probe0"}},
	} {
		err := h.LinkAdd(probe)
		if errors.Is(err, unix.EOPNOTSUPP) {
			t.Logf("this kernel has no %s interfaces", probe.Type())
			continue
		}
		if err != nil {
			t.Fatalf("probe %s interface: %v", probe.Type(), err)
		}
		l, err := h.LinkByName("probe0")
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkDel(l); err != nil {
			t.Fatal(err)
		}
		if probe.Type() == string(KindDummy) {
			return ""
		}
		t.Logf("testing with ifb interfaces in place of dummy")
		return kindIfb
	}
	t.Skip("this kernel has neither dummy nor ifb interfaces")
	return ""
}

// TestRenamedOverlayIsNotDuplicated: the overlay interface (a dummy, as
// on the appliance) renamed takes the endpoints with it; while the
// service refuses that as a collision it must not make a second
// otg-overlay carrying the same /32s beside it (two interfaces answering
// one endpoint is the ambiguity the refusal is about). It did: the sync
// reported the collision, then reconciled the interface anyway, and a
// dummy, unlike a veth whose renamed peer stays in the way, was created
// with every endpoint. Now the renamed interface is left as it is, no
// interface is made, the status and log say the overlay is degraded and
// why, and the printed `ip link del` repairs it at once.
func TestRenamedOverlayIsNotDuplicated(t *testing.T) {
	h := newNetNS(t)
	standIn := dummyKind(t, h)
	dir := t.TempDir()
	lab := &eventLab{t: t, h: h, kind: KindDummy, sock: filepath.Join(dir, "run", "overlay.sock"), log: &logBook{t: t}}
	storePolicy(t, filepath.Join(dir, "policy"), asset("plc-1", "cell-1", "10.10.1.10", "")+asset("plc-2", "cell-1", "10.10.1.11", ""))
	lab.r = startWith(t, h, KindDummy, dir, func(s *Service) {
		s.Repair = time.Hour
		s.Logf = lab.log.logf
		s.standIn = standIn
	})
	lab.waitRepaired("at start", 10*time.Second)
	wantKind := string(KindDummy)
	if standIn != "" {
		wantKind = string(standIn)
	}
	if got := lab.link().Type(); got != wantKind {
		t.Fatalf("the overlay interface is a %s, want a %s", got, wantKind)
	}

	l := lab.link()
	if err := h.LinkSetDown(l); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetName(l, "renamed0"); err != nil {
		t.Fatal(err)
	}
	s := waitSnapshot(t, lab.sock, "the rename refused", func(s *Snapshot) bool { return strings.Contains(s.Error, "overlaps interface renamed0") })
	// One more sync, asked for and waited on, so that whatever a sync
	// does after the refusal has been done twice.
	lab.r.reload <- struct{}{}
	s = waitSnapshot(t, lab.sock, "a sync after the refusal", func(n *Snapshot) bool { return n.Syncs > s.Syncs })

	// The kernel gives the first address the bare name on a rename.
	renamed := leftAlone(t, h, "the same endpoints", []labelled{{"100.64.0.1/32", "renamed0"}, {"100.64.0.2/32", "renamed0:ov"}, {"100.64.0.3/32", "renamed0:ov"}})
	degraded := "overlay: otg-overlay not reconciled, degraded: no second interface is made to carry the endpoints renamed0 carries, and renamed0 is left as it is"
	hint := "ip link del renamed0"
	if !strings.Contains(s.Error, degraded) || !strings.Contains(s.Error, hint) {
		t.Errorf("status:\n%s\nwant it to say\n%s\nand name the repair: %s", s.Error, degraded, hint)
	}
	if !lab.log.has("overlay: sync failed", degraded, hint) {
		t.Errorf("no log line says the overlay is degraded and why")
	}
	if len(s.Entries) != 2 {
		t.Errorf("the table has %d entries while degraded, want the 2 it had", len(s.Entries))
	}

	// The printed repair: the overlay comes back at once, on the event.
	if err := h.LinkDel(renamed); err != nil {
		t.Fatal(err)
	}
	lab.waitRepaired("after ip link del renamed0", 10*time.Second)
	waitSnapshot(t, lab.sock, "no error", func(s *Snapshot) bool { return s.Error == "" })
}

// TestRenamedGateOnlyOverlayIsNotDuplicated: the overlay interface of a
// site with no assets yet carries only the gate's own overlay address.
// Renamed, the kernel gives that one address the bare interface name as
// label (it keeps "<name>:ov" only on the second address on), so the
// renamed interface carried no "renamed0:ov" label and was not seen as
// the overlay renamed: the sync reported the collision and made a
// second otg-overlay carrying the gate's address beside it. Now it is
// degraded as with endpoints, and the printed `ip link del` repairs it.
// The degraded line names what renamed0 carries, the gate's overlay
// address (it said "the endpoints").
func TestRenamedGateOnlyOverlayIsNotDuplicated(t *testing.T) {
	h := newNetNS(t)
	standIn := dummyKind(t, h)
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "overlay.sock")
	log := &logBook{t: t}
	storePolicy(t, filepath.Join(dir, "policy"), "")
	r := startWith(t, h, KindDummy, dir, func(s *Service) {
		s.Repair = time.Hour
		s.Logf = log.logf
		s.standIn = standIn
	})
	gateOnly := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			l, err := h.LinkByName(DefaultLink)
			state := fmt.Sprint(err)
			if err == nil {
				got := addrsOn(t, h, DefaultLink)
				if l.Attrs().Flags&net.FlagUp != 0 && fmt.Sprint(got) == fmt.Sprint([]labelled{{"100.64.0.1/32", DefaultLink + labelSuffix}}) {
					return
				}
				state = fmt.Sprintf("up %v, carries %v", l.Attrs().Flags&net.FlagUp != 0, got)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s does not carry the gate's 100.64.0.1 alone: %s", what, DefaultLink, state)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	gateOnly("at start")
	waitSnapshot(t, sock, "no error", func(s *Snapshot) bool { return s.Error == "" && s.Gate.String() == "100.64.0.1" })

	l, err := h.LinkByName(DefaultLink)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetDown(l); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetName(l, "renamed0"); err != nil {
		t.Fatal(err)
	}
	// The kernel gives the first (here the only) address the bare name.
	want := []labelled{{"100.64.0.1/32", "renamed0"}}
	if got := addrsOn(t, h, "renamed0"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("renamed0 carries %v, want %v", got, want)
	}
	s := waitSnapshot(t, sock, "the rename refused", func(s *Snapshot) bool { return strings.Contains(s.Error, "overlaps interface renamed0") })
	r.reload <- struct{}{}
	s = waitSnapshot(t, sock, "a sync after the refusal", func(n *Snapshot) bool { return n.Syncs > s.Syncs })

	renamed := leftAlone(t, h, "the same gate address", want)
	// It carries no endpoint: the line says what it carries.
	degraded := "overlay: otg-overlay not reconciled, degraded: no second interface is made to carry the gate's overlay address renamed0 carries, and renamed0 is left as it is"
	hint := `overlay: interface renamed0 carries only the gate's overlay address 100.64.0.1/32, labelled "renamed0", as the overlay interface otg-overlay renamed to renamed0 before it carried any endpoint would: if it is, delete it and the overlay recreates otg-overlay with the gate's address at once: ip link del renamed0`
	if !strings.Contains(s.Error, degraded) || !strings.Contains(s.Error, hint) {
		t.Errorf("status:\n%s\nwant it to say\n%s\nand name the repair:\n%s", s.Error, degraded, hint)
	}
	if !log.has("overlay: sync failed", degraded, hint) {
		t.Errorf("no log line says the overlay is degraded and why")
	}

	// The printed repair: the overlay comes back at once, on the event.
	if err := h.LinkDel(renamed); err != nil {
		t.Fatal(err)
	}
	gateOnly("after ip link del renamed0")
	waitSnapshot(t, sock, "no error", func(s *Snapshot) bool { return s.Error == "" })
}

// TestRenamedOneEndpointOverlayIsNotDuplicated: the overlay interface
// renamed while it carries one asset endpoint and not the gate's address
// (removed, and not yet put back, when it was renamed). The kernel gives
// that one address the bare interface name as label, so the renamed
// interface carried no "renamed0:ov" label, nor the gate's address, and
// was not seen as the overlay renamed: the sync reported the collision
// and made a second otg-overlay carrying the endpoint beside it. Now it
// is degraded as the other renamed cases, saying what it carries, and the
// printed `ip link del` repairs it.
func TestRenamedOneEndpointOverlayIsNotDuplicated(t *testing.T) {
	h := newNetNS(t)
	standIn := dummyKind(t, h)
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "overlay.sock")
	log := &logBook{t: t}
	storePolicy(t, filepath.Join(dir, "policy"), asset("plc-1", "cell-1", "10.10.1.10", ""))
	tune := func(s *Service) {
		s.Repair = time.Hour
		s.Logf = log.logf
		s.standIn = standIn
	}
	r := startWith(t, h, KindDummy, dir, tune)
	full := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			l, err := h.LinkByName(DefaultLink)
			state := fmt.Sprint(err)
			if err == nil {
				got := fmt.Sprint(ownedOn(t, h))
				if l.Attrs().Flags&net.FlagUp != 0 && got == "[100.64.0.1 100.64.0.2]" {
					return
				}
				state = fmt.Sprintf("up %v, carries %s", l.Attrs().Flags&net.FlagUp != 0, got)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s does not carry the gate's 100.64.0.1 and plc-1's 100.64.0.2: %s", what, DefaultLink, state)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	full("at start")
	s := waitSnapshot(t, sock, "no error", func(s *Snapshot) bool { return s.Error == "" && len(s.Entries) == 1 })
	if got := addrOfAsset(s, "plc-1"); got != "100.64.0.2" {
		t.Fatalf("plc-1's endpoint is %s, want 100.64.0.2", got)
	}

	// The gate's address removed and the interface renamed before the
	// service put it back (stopped meanwhile, so that it cannot).
	r.stop()
	l, err := h.LinkByName(DefaultLink)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrDel(l, owned32("100.64.0.1")); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetDown(l); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetName(l, "renamed0"); err != nil {
		t.Fatal(err)
	}
	// The kernel gives the first (here the only) address the bare name.
	want := []labelled{{"100.64.0.2/32", "renamed0"}}
	if got := addrsOn(t, h, "renamed0"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("renamed0 carries %v, want %v", got, want)
	}
	r = startWith(t, h, KindDummy, dir, tune)
	s = waitSnapshot(t, sock, "the rename refused", func(s *Snapshot) bool { return strings.Contains(s.Error, "overlaps interface renamed0") })
	r.reload <- struct{}{}
	s = waitSnapshot(t, sock, "a sync after the refusal", func(n *Snapshot) bool { return n.Syncs > s.Syncs })

	renamed := leftAlone(t, h, "plc-1's endpoint", want)
	degraded := "overlay: otg-overlay not reconciled, degraded: no second interface is made to carry the endpoint renamed0 carries, and renamed0 is left as it is"
	hint := `overlay: interface renamed0 carries only the endpoint of plc-1, 100.64.0.2/32, labelled "renamed0", as the overlay interface otg-overlay renamed to renamed0 while it carried that one endpoint and not the gate's address would: if it is, delete it and the overlay recreates otg-overlay with its endpoints at once: ip link del renamed0`
	if !strings.Contains(s.Error, degraded) || !strings.Contains(s.Error, hint) {
		t.Errorf("status:\n%s\nwant it to say\n%s\nand name the repair:\n%s", s.Error, degraded, hint)
	}
	if !log.has("overlay: sync failed", degraded, hint) {
		t.Errorf("no log line says the overlay is degraded and why")
	}
	if len(s.Entries) != 1 {
		t.Errorf("the table has %d entries while degraded, want the 1 it had", len(s.Entries))
	}

	// The printed repair: the overlay comes back at once, on the event.
	if err := h.LinkDel(renamed); err != nil {
		t.Fatal(err)
	}
	full("after ip link del renamed0")
	waitSnapshot(t, sock, "no error", func(s *Snapshot) bool { return s.Error == "" })
}

// leftAlone checks that no second overlay interface was made beside
// renamed0 (which carries what), and that renamed0 still carries want
// and is still down: it is not the overlay's to touch. It returns
// renamed0.
func leftAlone(t *testing.T, h *netlink.Handle, what string, want []labelled) netlink.Link {
	t.Helper()
	if l, err := h.LinkByName(DefaultLink); err == nil {
		t.Errorf("a second %s (a %s, carrying %v) was made beside renamed0, which carries %s", DefaultLink, l.Type(), addrsOn(t, h, DefaultLink), what)
	}
	if got := addrsOn(t, h, "renamed0"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("renamed0 carries %v, want it left as it was, %v", got, want)
	}
	renamed, err := h.LinkByName("renamed0")
	if err != nil {
		t.Fatal(err)
	}
	if renamed.Attrs().Flags&net.FlagUp != 0 {
		t.Errorf("renamed0 was brought up: it is not the overlay's to touch")
	}
	return renamed
}

// TestDegradedSaysWhatTheRenamedCarry: the degraded line names what the
// renamed interfaces carry (it said "the endpoints" of one carrying only
// the gate's overlay address).
func TestDegradedSaysWhatTheRenamedCarry(t *testing.T) {
	gate, ep := netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("100.64.0.2")
	labelledLink := renamedLink{name: "renamed0"}
	gateOnly := renamedLink{name: "renamed1", gate: gate}
	oneEndpoint := renamedLink{name: "renamed2", endpoint: ep, asset: "plc-1"}
	for _, c := range []struct {
		renamed []renamedLink
		want    string
	}{
		{[]renamedLink{labelledLink}, "the endpoints renamed0 carries"},
		{[]renamedLink{gateOnly}, "the gate's overlay address renamed1 carries"},
		{[]renamedLink{oneEndpoint}, "the endpoint renamed2 carries"},
		{[]renamedLink{labelledLink, {name: "renamed3"}}, "the endpoints renamed0, renamed3 carries"},
		{[]renamedLink{labelledLink, gateOnly}, "the overlay addresses renamed0, renamed1 carries"},
		{[]renamedLink{gateOnly, oneEndpoint}, "the overlay addresses renamed1, renamed2 carries"},
		{[]renamedLink{oneEndpoint, {name: "renamed3", endpoint: gate.Next().Next(), asset: "plc-2"}}, "the overlay addresses renamed2, renamed3 carries"},
	} {
		s := &Service{Link: DefaultLink}
		err := s.degraded(c.renamed)
		if err == nil || !strings.Contains(err.Error(), "no second interface is made to carry "+c.want+", and ") {
			t.Errorf("%+v: %v\nwant it to say %q", c.renamed, err, c.want)
		}
	}
}
