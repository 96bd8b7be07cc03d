package overlay

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// logBook collects a service's log lines for a test.
type logBook struct {
	t     *testing.T
	mu    sync.Mutex
	lines []string
}

func (b *logBook) logf(format string, args ...any) {
	b.mu.Lock()
	b.lines = append(b.lines, fmt.Sprintf(format, args...))
	b.mu.Unlock()
	b.t.Logf(format, args...)
}

// count is the number of lines holding every one of parts.
func (b *logBook) count(parts ...string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, l := range b.lines {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			n++
		}
	}
	return n
}

// has reports whether a line holds every one of parts.
func (b *logBook) has(parts ...string) bool { return b.count(parts...) > 0 }

// eventLab runs the service with two assets in a private namespace, its
// periodic repair an hour away: whatever it repairs within seconds, it
// repaired on the kernel's event.
type eventLab struct {
	t    *testing.T
	h    *netlink.Handle
	kind LinkKind
	sock string
	log  *logBook
	r    *running
}

const labEndpoints = "[100.64.0.1 100.64.0.2 100.64.0.3]"

func newEventLab(t *testing.T, tune func(*Service)) *eventLab {
	h := newNetNS(t)
	kind := linkKind(t, h)
	dir := t.TempDir()
	lab := &eventLab{t: t, h: h, kind: kind, sock: filepath.Join(dir, "run", "overlay.sock"), log: &logBook{t: t}}
	storePolicy(t, filepath.Join(dir, "policy"), asset("plc-1", "cell-1", "10.10.1.10", "")+asset("plc-2", "cell-1", "10.10.1.11", ""))
	lab.r = startWith(t, h, kind, dir, func(s *Service) {
		s.Repair = time.Hour
		s.Logf = lab.log.logf
		if tune != nil {
			tune(s)
		}
	})
	waitSnapshot(t, lab.sock, "two assets", func(s *Snapshot) bool { return len(s.Entries) == 2 && s.Error == "" })
	lab.waitRepaired("at start", 10*time.Second)
	return lab
}

// waitRepaired waits until the overlay interface is up with its three
// endpoints, failing the test after within.
func (lab *eventLab) waitRepaired(what string, within time.Duration) time.Duration {
	lab.t.Helper()
	start := time.Now()
	deadline := start.Add(within)
	for {
		l, err := lab.h.LinkByName(DefaultLink)
		state := fmt.Sprint(err)
		if err == nil {
			got := fmt.Sprint(ownedOn(lab.t, lab.h))
			if l.Attrs().Flags&net.FlagUp != 0 && got == labEndpoints {
				return time.Since(start)
			}
			state = fmt.Sprintf("up %v, carries %s", l.Attrs().Flags&net.FlagUp != 0, got)
		}
		if time.Now().After(deadline) {
			lab.t.Fatalf("%s: the overlay interface was not repaired within %s (the periodic repair is an hour away): %s", what, within, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (lab *eventLab) link() netlink.Link {
	lab.t.Helper()
	l, err := lab.h.LinkByName(DefaultLink)
	if err != nil {
		lab.t.Fatal(err)
	}
	return l
}

func owned32(a string) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(a).To4(), Mask: net.CIDRMask(32, 32)}, Label: DefaultLink + labelSuffix}
}

// TestRepairOnKernelEvent: the overlay interface deleted, set down or
// stripped of an endpoint at runtime is repaired on the kernel's event,
// within a second, and the repair is logged with what it did and why.
// It used to wait for the periodic repair (30 s); here that is an hour
// away, so without the event path the test times out.
func TestRepairOnKernelEvent(t *testing.T) {
	lab := newEventLab(t, nil)
	h := lab.h

	if err := h.LinkDel(lab.link()); err != nil {
		t.Fatal(err)
	}
	took := lab.waitRepaired("interface deleted", 10*time.Second)
	t.Logf("deleted interface back in %s", took)
	if !waitFor(func() bool {
		return lab.log.has("overlay: otg-overlay: created, 3 addresses added, 0 removed (repair after kernel event: ", "otg-overlay deleted")
	}) {
		t.Errorf("the repair of the deleted interface was not logged with its reason")
	}

	if err := h.LinkSetDown(lab.link()); err != nil {
		t.Fatal(err)
	}
	lab.waitRepaired("interface set down", 10*time.Second)
	if !waitFor(func() bool {
		return lab.log.has("overlay: otg-overlay: brought up (repair after kernel event: otg-overlay set down)")
	}) {
		t.Errorf("bringing the interface back up was not logged with its reason")
	}

	if err := h.AddrDel(lab.link(), owned32("100.64.0.2")); err != nil {
		t.Fatal(err)
	}
	lab.waitRepaired("endpoint removed", 10*time.Second)
	if !waitFor(func() bool {
		return lab.log.has("overlay: otg-overlay: 1 addresses added, 0 removed (repair after kernel event: 100.64.0.2 removed from otg-overlay)")
	}) {
		t.Errorf("the restored endpoint was not logged with its reason")
	}

	// Someone else's interface and addresses come and go: nothing to
	// repair, nothing logged.
	repairs := lab.log.count("repair after")
	addLink(t, h, lab.kind, "other0", "100.64.7.7/32")
	l, _ := h.LinkByName("other0")
	if err := h.LinkDel(l); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * eventGap)
	if n := lab.log.count("repair after"); n != repairs {
		t.Errorf("a foreign interface's events led to %d repairs", n-repairs)
	}

	// Renamed (it must be down for that): the endpoints went with it
	// (the kernel renames their labels), so a new interface beside it
	// would carry them twice; the sync refuses on the collision, on the
	// event, not an hour later, and the table stays as it is. (Renamed
	// back, the kernel gives its first address the bare interface name
	// as label: that one is then foreign; the refusals name the command
	// that repairs each, TestRenamedOverlayRefusalSaysHowToRepair.)
	l = lab.link()
	if err := h.LinkSetDown(l); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetName(l, "renamed0"); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, lab.sock, "the rename reported", func(s *Snapshot) bool {
		return strings.Contains(s.Error, "overlaps interface renamed0 100.64.0.2/32") && len(s.Entries) == 2
	})
}

// TestEventStormIsDebounced: an endpoint removed and put back hundreds
// of times a second (an event storm) costs at most about one sync a
// second, not one an event, and the interface is right once it ends.
func TestEventStormIsDebounced(t *testing.T) {
	lab := newEventLab(t, nil)
	h := lab.h
	before := waitSnapshot(t, lab.sock, "snapshot", func(*Snapshot) bool { return true }).Syncs

	const storm = 2 * time.Second
	removals := 0
	end := time.Now().Add(storm)
	for time.Now().Before(end) {
		l := lab.link()
		if err := h.AddrDel(l, owned32("100.64.0.2")); err == nil {
			removals++
		}
		_ = h.AddrAdd(l, owned32("100.64.0.2")) // the service may have put it back already
	}
	lab.waitRepaired("after the storm", 10*time.Second)
	time.Sleep(2 * eventGap) // a sync the storm asked for runs by then
	syncs := waitSnapshot(t, lab.sock, "snapshot", func(*Snapshot) bool { return true }).Syncs - before
	t.Logf("%d removals in %s, %d syncs", removals, storm, syncs)
	if removals < 50 {
		t.Fatalf("only %d removals in %s: not a storm", removals, storm)
	}
	// One sync a gap during the storm, the settled one after, slack for
	// a slow machine's timers.
	if limit := uint64(storm/eventGap) + 3; syncs > limit {
		t.Errorf("%d removals made %d syncs, want at most %d", removals, syncs, limit)
	}
}

// TestLostEventsTriggerRepair: when the kernel drops events (the event
// socket's buffer overflowed, ENOBUFS) the watch says so, subscribes
// again and asks for a repair sync, since it cannot know what it missed;
// later events are acted on as before.
func TestLostEventsTriggerRepair(t *testing.T) {
	lab := newEventLab(t, func(s *Service) { s.rcvbuf = 1 }) // the kernel's minimum
	h := lab.h
	overflow := []string{"overlay: netlink events:", "no buffer space available", "subscribing again"}
	time.Sleep(time.Second) // the start's own events (they may overflow too) are over
	overflows := lab.log.count(overflow...)
	syncs := waitSnapshot(t, lab.sock, "snapshot", func(*Snapshot) bool { return true }).Syncs

	// Another interface's addresses coming and going: events the watch
	// has no use for, hundreds at once (deleting the interface sends one
	// for each of its addresses from one call), more than the tiny
	// buffer holds.
	for try := 0; lab.log.count(overflow...) == overflows; try++ {
		if try == 10 {
			t.Fatal("no overflow reported: the bursts did not overflow the event socket")
		}
		addLink(t, h, lab.kind, "other0")
		other, _ := h.LinkByName("other0")
		for i := range 300 {
			a := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 99, byte(i/250), byte(1+i%250)), Mask: net.CIDRMask(32, 32)}}
			if err := h.AddrAdd(other, a); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.LinkDel(other); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// None of those events asks for a repair; the loss does.
	waitSnapshot(t, lab.sock, "a sync after the lost events", func(s *Snapshot) bool { return s.Syncs > syncs })

	// Subscribed again: later events are acted on.
	time.Sleep(time.Second)
	if err := h.AddrDel(lab.link(), owned32("100.64.0.3")); err != nil {
		t.Fatal(err)
	}
	lab.waitRepaired("endpoint removed after the overflow", 10*time.Second)
	if err := h.LinkDel(lab.link()); err != nil {
		t.Fatal(err)
	}
	lab.waitRepaired("interface deleted after the overflow", 10*time.Second)
}

// waitFor polls cond for up to 10 s.
func waitFor(cond func() bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}
