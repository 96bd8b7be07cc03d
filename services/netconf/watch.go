package netconf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// WatchLink is one downlink the watch covers; Sources are the gate's
// addresses there, probes go from the one whose subnet holds the asset
// (none: watch passively, do not probe).
type WatchLink struct {
	Name    string
	Sources []netip.Prefix
}

func (l WatchLink) key() string { return fmt.Sprint(l.Name, l.Sources) }

// Watcher feeds an Inventory from the kernel's neighbour table (netlink
// updates, and the table as it is at start) and from ARP traffic on the
// downlinks, and probes every declared asset by ARP at a low rate.
type Watcher struct {
	Handle    *netlink.Handle
	NS        netns.NsHandle // where sockets are opened (zero: here)
	Inventory *Inventory
	// ProbeInterval is how often each declared asset is asked for by
	// ARP (probes are spread over the interval); 0: never.
	ProbeInterval time.Duration
	Logf          func(string, ...any)

	mu      sync.Mutex
	links   map[string]*watchedLink
	byIndex map[int]string
	ctx     context.Context
}

type watchedLink struct {
	spec   WatchLink
	cancel context.CancelFunc
	done   chan struct{}
}

// Run watches until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	if w.Logf == nil {
		w.Logf = func(string, ...any) {}
	}
	w.mu.Lock()
	w.ctx = ctx
	if w.links == nil {
		w.links = map[string]*watchedLink{}
	}
	var pending []*watchedLink
	for _, l := range w.links {
		pending = append(pending, l)
	}
	w.mu.Unlock()
	for _, l := range pending {
		w.startLink(l)
	}
	ch := make(chan netlink.NeighUpdate, 256)
	done := make(chan struct{})
	defer close(done)
	ns := w.NS
	if !nsGiven(ns) {
		ns = netns.None()
	}
	err := netlink.NeighSubscribeWithOptions(ch, done, netlink.NeighSubscribeOptions{
		Namespace: &ns, ListExisting: true,
		ErrorCallback: func(err error) {
			if ctx.Err() == nil {
				w.Logf("netconf: neighbour updates: %v", err)
			}
		},
	})
	if err != nil {
		return err
	}
	tick := w.Inventory.AbsentAfter / 4
	tick = min(max(tick, 100*time.Millisecond), time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			w.stopAll()
			return nil
		case u, ok := <-ch:
			if !ok {
				w.stopAll()
				return errors.New("netconf: neighbour update channel closed")
			}
			w.neighbour(u)
		case now := <-t.C:
			w.Inventory.Tick(now)
		}
	}
}

// neighbour turns a neighbour table update into an observation.
func (w *Watcher) neighbour(u netlink.NeighUpdate) {
	if u.Type != unix.RTM_NEWNEIGH || u.Family != unix.AF_INET || len(u.HardwareAddr) != 6 {
		return
	}
	if u.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE) == 0 {
		return
	}
	w.mu.Lock()
	name, ok := w.byIndex[u.LinkIndex]
	w.mu.Unlock()
	if !ok {
		return
	}
	ip, ok := netip.AddrFromSlice(u.IP.To4())
	if !ok {
		return
	}
	w.Inventory.Observe(name, ip, u.HardwareAddr.String(), time.Now(), "neighbour table")
}

// SetLinks sets the downlinks watched; links no longer named stop, new
// ones start (sockets are opened in the watcher's namespace).
func (w *Watcher) SetLinks(links []WatchLink) {
	w.mu.Lock()
	if w.links == nil {
		w.links = map[string]*watchedLink{}
	}
	want := map[string]WatchLink{}
	for _, l := range links {
		want[l.Name] = l
	}
	var stop []*watchedLink
	var start []*watchedLink
	for name, wl := range w.links {
		if spec, ok := want[name]; !ok || spec.key() != wl.spec.key() {
			stop = append(stop, wl)
			delete(w.links, name)
		}
	}
	for name, spec := range want {
		if _, ok := w.links[name]; !ok {
			wl := &watchedLink{spec: spec}
			w.links[name] = wl
			start = append(start, wl)
		}
	}
	w.byIndex = map[int]string{}
	for name := range want {
		if l, err := w.Handle.LinkByName(name); err == nil {
			w.byIndex[l.Attrs().Index] = name
		}
	}
	running := w.ctx != nil
	w.mu.Unlock()
	for _, wl := range stop {
		w.stopLink(wl)
	}
	if running {
		for _, wl := range start {
			w.startLink(wl)
		}
	}
}

func (w *Watcher) stopAll() {
	w.mu.Lock()
	var all []*watchedLink
	for _, wl := range w.links {
		all = append(all, wl)
	}
	w.mu.Unlock()
	for _, wl := range all {
		w.stopLink(wl)
	}
}

// stopLink stops a started link and waits for it.
func (w *Watcher) stopLink(wl *watchedLink) {
	w.mu.Lock()
	cancel, done := wl.cancel, wl.done
	w.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// startLink opens the ARP socket of one downlink, reads it, and probes.
func (w *Watcher) startLink(wl *watchedLink) {
	w.mu.Lock()
	if wl.cancel != nil { // already started
		w.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(w.ctx)
	done := make(chan struct{})
	wl.cancel, wl.done = cancel, done
	w.mu.Unlock()
	go func() {
		defer close(done)
		var conn *arpConn
		for ctx.Err() == nil {
			err := inNetNS(w.NS, func() error {
				var err error
				conn, err = openARP(wl.spec.Name)
				return err
			})
			if err == nil {
				break
			}
			w.Logf("%v; retrying", err)
			if !sleepUntil(ctx, time.Now().Add(2*time.Second)) {
				return
			}
		}
		if conn == nil {
			return
		}
		go func() { <-ctx.Done(); conn.Close() }()
		go w.probeLoop(ctx, conn, wl.spec)
		buf := make([]byte, 1500)
		for {
			p, err := conn.read(buf)
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
					w.Logf("netconf: ARP on %s: %v", wl.spec.Name, err)
				}
				return
			}
			w.Inventory.Observe(wl.spec.Name, p.SenderIP, p.SenderMAC.String(), time.Now(), "ARP")
		}
	}()
}

// probeLoop asks for every declared asset of the link once per
// ProbeInterval, spread evenly, from the gate's address there.
func (w *Watcher) probeLoop(ctx context.Context, conn *arpConn, spec WatchLink) {
	if w.ProbeInterval <= 0 || len(spec.Sources) == 0 {
		return
	}
	type target struct{ src, ip netip.Addr }
	for ctx.Err() == nil {
		var targets []target
		for _, src := range spec.Sources {
			for _, ip := range w.Inventory.probeTargets(spec.Name, src) {
				targets = append(targets, target{src.Addr(), ip})
			}
		}
		sort.Slice(targets, func(i, j int) bool { return targets[i].ip.Less(targets[j].ip) })
		if len(targets) == 0 {
			if !sleepUntil(ctx, time.Now().Add(w.ProbeInterval)) {
				return
			}
			continue
		}
		gap := w.ProbeInterval / time.Duration(len(targets))
		for _, tg := range targets {
			next := time.Now().Add(gap)
			if err := conn.probe(tg.src, tg.ip); err != nil && ctx.Err() == nil {
				w.Logf("netconf: ARP probe for %s on %s: %v", tg.ip, spec.Name, err)
			}
			if !sleepUntil(ctx, next) {
				return
			}
		}
	}
}
