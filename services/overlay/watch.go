package overlay

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Event repair timing: the first event of a burst is acted on after
// eventSettle (a deleted interface is a burst: every address, then the
// interface), and event-triggered syncs are at least eventGap apart, so
// an event storm (someone flapping the interface in a loop) costs at most
// one sync a gap, not a spinning CPU.
const (
	eventSettle = 100 * time.Millisecond
	eventGap    = time.Second
	// eventRetry is how long the watch waits before subscribing again
	// after a subscription failed or ended (the periodic repair covers
	// the gap).
	eventRetry = 2 * time.Second
	// eventRcvBuf is the receive buffer asked for the event sockets (the
	// kernel caps it at net.core.rmem_max): a bigger buffer loses fewer
	// events to ENOBUFS in a burst.
	eventRcvBuf = 1 << 20
)

// eventWatch turns the kernel's link and IPv4 address events of the
// service's network namespace into repair requests: the overlay interface
// deleted, renamed or set down, or an IPv4 /32 removed from it. Events
// can be lost (a full socket buffer ends the subscription with ENOBUFS):
// then the watch asks for a repair, since it cannot know what it missed,
// and subscribes again. The periodic repair stays the safety net.
type eventWatch struct {
	link string
	ns   netns.NsHandle // where the sockets are opened (not > 0: here)
	logf func(string, ...any)
	// request asks for a repair sync, naming why; it must not block.
	request func(why string)
	// index is the overlay interface's index as last seen (0: unknown),
	// set by the sync (from the reconcile) and by link events.
	index atomic.Int32
	// renamed names the interfaces that look like the overlay interface
	// renamed (see Service.hostNetworks), as the last sync saw them:
	// deleting one is what the refusal tells the operator to do, and asks
	// for a repair.
	renamedMu sync.Mutex
	renamed   []string

	settle, gap, retry time.Duration
	rcvbuf             int

	// tried is closed once run made its first subscription attempt: the
	// service's first sync waits for it, so that a change made while the
	// sockets were not yet open cannot go unseen until the periodic check.
	tried chan struct{}
}

func newEventWatch(link string, ns netns.NsHandle, logf func(string, ...any), request func(string)) *eventWatch {
	return &eventWatch{link: link, ns: ns, logf: logf, request: request,
		settle: eventSettle, gap: eventGap, retry: eventRetry, rcvbuf: eventRcvBuf,
		tried: make(chan struct{})}
}

// subscription is one pair of event sockets (links, addresses).
type subscription struct {
	done    chan struct{}
	links   chan netlink.LinkUpdate
	addrs   chan netlink.AddrUpdate
	closing atomic.Bool
	mu      sync.Mutex
	err     error // the last error reported while open
}

// subscribe opens the event sockets in the watch's namespace.
func (w *eventWatch) subscribe() (*subscription, error) {
	s := &subscription{
		done:  make(chan struct{}),
		links: make(chan netlink.LinkUpdate, 256),
		addrs: make(chan netlink.AddrUpdate, 256),
	}
	cb := func(err error) {
		if s.closing.Load() {
			return
		}
		s.mu.Lock()
		s.err = err // the one that ends the subscription comes last
		s.mu.Unlock()
	}
	var nsp *netns.NsHandle
	if w.ns > 0 {
		ns := w.ns
		nsp = &ns
	}
	if err := netlink.LinkSubscribeWithOptions(s.links, s.done, netlink.LinkSubscribeOptions{
		Namespace: nsp, ErrorCallback: cb, ReceiveBufferSize: w.rcvbuf,
	}); err != nil {
		s.closing.Store(true)
		close(s.done)
		return nil, fmt.Errorf("subscribe to link events: %w", err)
	}
	if err := netlink.AddrSubscribeWithOptions(s.addrs, s.done, netlink.AddrSubscribeOptions{
		Namespace: nsp, ErrorCallback: cb, ReceiveBufferSize: w.rcvbuf,
	}); err != nil {
		close(s.addrs) // never handed to a reader
		s.close()
		return nil, fmt.Errorf("subscribe to address events: %w", err)
	}
	return s, nil
}

// close ends the subscription and waits for its readers to stop (they
// may be blocked handing over an event).
func (s *subscription) close() {
	s.closing.Store(true)
	close(s.done)
	for range s.links {
	}
	for range s.addrs {
	}
}

// why is the error that ended the subscription, if one was reported.
func (s *subscription) why() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// run watches until ctx ends.
func (w *eventWatch) run(ctx context.Context) {
	var (
		why      reasons
		fire     *time.Timer
		fireC    <-chan time.Time
		lastFire time.Time
	)
	defer func() {
		if fire != nil {
			fire.Stop()
		}
	}()
	arm := func() {
		if fireC != nil {
			return
		}
		delay := w.settle
		if next := time.Until(lastFire.Add(w.gap)); next > delay {
			delay = next
		}
		fire = time.NewTimer(delay)
		fireC = fire.C
	}
	lost := false
	failed := "" // the subscription error last logged
	first := true
	for ctx.Err() == nil {
		sub, err := w.subscribe()
		if first {
			close(w.tried)
			first = false
		}
		if err != nil {
			if err.Error() != failed { // once, not every retry
				failed = err.Error()
				w.logf("overlay: netlink events: %v; repairs wait for the periodic check until a retry (every %s) succeeds", err, w.retry)
			}
			lost = true
			if !sleepCtx(ctx, w.retry) {
				return
			}
			continue
		}
		if failed != "" {
			w.logf("overlay: netlink events: subscribed")
			failed = ""
		}
		if lost {
			// Subscribed again after a gap: whatever happened meanwhile
			// went unseen.
			why.link("events were lost")
			arm()
			lost = false
		}
	events:
		for {
			select {
			case <-ctx.Done():
				sub.close()
				return
			case u, ok := <-sub.links:
				if !ok {
					break events
				}
				if r := w.linkEvent(u); r != "" {
					why.link(r)
					arm()
				}
			case u, ok := <-sub.addrs:
				if !ok {
					break events
				}
				if a := w.addrEvent(u); a != "" {
					why.addr(a)
					arm()
				}
			case <-fireC:
				fireC, fire = nil, nil
				lastFire = time.Now()
				w.request(why.String(w.link))
				why = reasons{}
			}
		}
		// A reader stopped: the socket failed (ENOBUFS: events lost).
		err = sub.why()
		sub.close()
		if err == nil {
			err = fmt.Errorf("event socket closed")
		}
		w.logf("overlay: netlink events: %v; subscribing again, then repairing", err)
		lost = true
		if !sleepCtx(ctx, w.settle) {
			return
		}
	}
}

// reasons collects why a repair is asked for, bounded: every distinct
// interface event, the first few removed addresses and a count of the
// rest.
type reasons struct {
	links   []string
	addrs   []string
	more    int
	dropped int
}

func (r *reasons) link(why string) {
	for _, l := range r.links {
		if l == why {
			return
		}
	}
	if len(r.links) < 8 {
		r.links = append(r.links, why)
	} else {
		r.dropped++
	}
}

func (r *reasons) addr(a string) {
	if len(r.addrs) < 3 {
		r.addrs = append(r.addrs, a)
	} else {
		r.more++
	}
}

func (r *reasons) String(link string) string {
	out := append([]string(nil), r.links...)
	if r.dropped > 0 {
		out = append(out, fmt.Sprintf("%d more interface events", r.dropped))
	}
	if len(r.addrs) > 0 {
		s := strings.Join(r.addrs, ", ")
		if r.more > 0 {
			s += fmt.Sprintf(" and %d more", r.more)
		}
		out = append(out, s+" removed from "+link)
	}
	return strings.Join(out, "; ")
}

// setRenamed records the interfaces that look like the overlay interface
// renamed (see renamed).
func (w *eventWatch) setRenamed(names []string) {
	w.renamedMu.Lock()
	w.renamed = names
	w.renamedMu.Unlock()
}

func (w *eventWatch) isRenamed(name string) bool {
	w.renamedMu.Lock()
	defer w.renamedMu.Unlock()
	return slices.Contains(w.renamed, name)
}

// linkEvent says why a link event needs a repair ("" when it does not).
func (w *eventWatch) linkEvent(u netlink.LinkUpdate) string {
	a := u.Attrs()
	idx := int32(a.Index)
	known := w.index.Load()
	mine := a.Name == w.link
	switch {
	case u.Header.Type == unix.RTM_DELLINK && (mine || (known != 0 && idx == known)):
		w.index.CompareAndSwap(known, 0)
		return w.link + " deleted"
	case u.Header.Type == unix.RTM_DELLINK && w.isRenamed(a.Name):
		return a.Name + " (looking like the overlay interface renamed) deleted"
	case u.Header.Type != unix.RTM_NEWLINK:
		return ""
	case mine:
		w.index.Store(idx)
		if a.Flags&net.FlagUp == 0 {
			return w.link + " set down"
		}
	case known != 0 && idx == known:
		w.index.CompareAndSwap(known, 0)
		return fmt.Sprintf("%s renamed to %s", w.link, a.Name)
	}
	return ""
}

// addrEvent returns the IPv4 /32 an address event removed from the
// overlay interface ("" for any other event); the reconcile tells the
// owned ones from the others.
func (w *eventWatch) addrEvent(u netlink.AddrUpdate) string {
	if u.NewAddr || u.LinkIndex == 0 || int32(u.LinkIndex) != w.index.Load() {
		return ""
	}
	ones, bits := u.LinkAddress.Mask.Size()
	if u.LinkAddress.IP.To4() == nil || ones != 32 || bits != 32 {
		return ""
	}
	return u.LinkAddress.IP.String()
}

// sleepCtx sleeps d or until ctx ends; false when ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
