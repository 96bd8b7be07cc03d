package overlay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/otgate/otgate/internal/policywatch"
	"github.com/otgate/otgate/internal/ready"
	"github.com/otgate/otgate/services/overlay/alloc"
	"github.com/otgate/otgate/site"
)

// Service is the overlay service: a reconcile loop from the applied
// policy to the allocation table and the overlay interface.
type Service struct {
	PolicyPath string // compiled policy (site.AppliedFile)
	StatePath  string // allocator state
	SocketPath string // where the snapshot is served
	Link       string
	LinkKind   LinkKind
	// Handle talks netlink in the service's network namespace.
	Handle *netlink.Handle
	// NS is the Handle's network namespace, where the sockets for
	// link and address events are opened (not > 0: the process's own,
	// as for a Handle made with netlink.NewHandle).
	NS netns.NsHandle
	// Poll is how often the policy file is checked for a change.
	Poll time.Duration
	// Repair is how often the interface is reconciled without a change
	// (drift repair). The interface deleted or set down, or an address
	// removed from it, is repaired sooner, on the kernel's event (a
	// rename is noticed too, and refused as a collision, with the command
	// that repairs it: the endpoints went with the renamed interface,
	// which carries no mark of the overlay's, and the overlay stays
	// degraded, the interface not made again beside it, until it is
	// gone); Repair is the safety net for events that were lost.
	Repair time.Duration
	Now    func() time.Time
	Logf   func(format string, args ...any)

	alloc *alloc.Allocator
	recon *Reconciler
	watch *eventWatch
	// rcvbuf is the event sockets' receive buffer (0: eventRcvBuf);
	// tests shrink it to make the kernel drop events.
	rcvbuf int
	// standIn, when set (tests only), is the kind the reconciler creates
	// instead of LinkKind: kindIfb for dummy on kernels without it.
	standIn LinkKind

	// Requests for a sync from outside the loop (reload, kernel events),
	// taken by the loop's Reload trigger.
	pendMu       sync.Mutex
	pendReload   bool
	pendEvents   string
	repairReason string // why this sync repairs ("": not an event repair)

	mu        sync.Mutex
	snap      Snapshot
	policy    policywatch.File
	warned    string
	unhealthy bool
}

// Snapshot returns the current snapshot.
func (s *Service) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap
}

// Run opens the state, serves the socket, syncs once, tells init it is
// ready, then syncs again on every policy change, on reload (SIGHUP in
// the command), on a kernel event showing the interface damaged (deleted,
// renamed, set down, an address removed; debounced, see eventWatch) and
// every Repair interval, until ctx ends. A corrupt
// allocator state stops it (it never starts over and renumbers).
func (s *Service) Run(ctx context.Context, reload <-chan struct{}) error {
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Logf == nil {
		s.Logf = func(string, ...any) {}
	}
	if s.Poll == 0 {
		s.Poll = 2 * time.Second
	}
	if s.Repair == 0 {
		s.Repair = 30 * time.Second
	}
	if s.Link == "" {
		s.Link = DefaultLink
	}
	// Settings are checked before anything is read, written or served: a
	// bad one is an error at start, not a service that allocates, reports
	// ready and then fails every sync (or stops after its first).
	if s.Poll < 0 || s.Repair < 0 {
		return fmt.Errorf("overlay: poll interval %s, repair interval %s: want more than 0 (0: the default)", s.Poll, s.Repair)
	}
	if _, err := NewReconciler(s.Handle, s.Link, s.LinkKind, alloc.DefaultPrefix); err != nil {
		return err
	}
	s.policy = policywatch.File{Path: s.PolicyPath}
	a, err := alloc.Open(s.StatePath, alloc.WithLog(s.Logf))
	if err != nil {
		return err
	}
	s.alloc = a
	l, err := listen(s.SocketPath)
	if err != nil {
		return err
	}
	defer l.Close()
	go serve(l, s.Snapshot, s.Logf)

	// The loop's one Reload channel carries both a reload (SIGHUP) and a
	// kernel event's repair request; the pending flags say which.
	kick := make(chan struct{}, 1)
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	wctx, stopWatch := context.WithCancel(ctx)
	var watching sync.WaitGroup
	defer func() {
		stopWatch()
		watching.Wait()
	}()
	watching.Add(2)
	go func() {
		defer watching.Done()
		for {
			select {
			case <-wctx.Done():
				return
			case <-reload:
				s.pendMu.Lock()
				s.pendReload = true
				s.pendMu.Unlock()
				poke()
			}
		}
	}()
	s.watch = newEventWatch(s.Link, s.NS, s.Logf, func(why string) {
		s.pendMu.Lock()
		switch {
		case s.pendEvents == "":
			s.pendEvents = why
		case len(s.pendEvents) < 1024: // the loop is slow to take them
			s.pendEvents += "; " + why
		}
		s.pendMu.Unlock()
		poke()
	})
	if s.rcvbuf != 0 {
		s.watch.rcvbuf = s.rcvbuf
	}
	go func() {
		defer watching.Done()
		s.watch.run(wctx)
	}()
	// The event sockets open before the first sync reads the kernel's
	// state: a change after that read is an event (TestRenamedOverlay
	// deleted an address right after the first sync's refusal, before a
	// slow start had subscribed, and no repair came).
	select {
	case <-s.watch.tried:
	case <-ctx.Done():
	}

	s.sync()
	if err := ready.Notify(); err != nil {
		s.Logf("overlay: notify init: %v", err)
	}
	loop := policywatch.Loop{File: &s.policy, Poll: s.Poll, Repair: s.Repair, Reload: kick}
	return loop.Run(ctx, func(why policywatch.Trigger) {
		switch why {
		case policywatch.Reload:
			s.pendMu.Lock()
			reload, events := s.pendReload, s.pendEvents
			s.pendReload, s.pendEvents = false, ""
			s.pendMu.Unlock()
			if !reload && events == "" {
				return // taken by the sync before
			}
			if reload {
				s.Logf("overlay: %s", why)
			}
			if events != "" {
				s.repairReason = "kernel event: " + events
			}
		case policywatch.Repair:
			s.repairReason = "periodic check"
		default:
			s.Logf("overlay: %s", why)
		}
		defer func() { s.repairReason = "" }()
		s.sync()
	})
}

// sync runs one pass and records its outcome in the snapshot and in the
// health reported to init.
func (s *Service) sync() {
	s.policy.Mark()
	err := s.syncOnce()
	s.mu.Lock()
	s.snap.Syncs++
	if err != nil {
		s.snap.Error = err.Error()
	} else {
		s.snap.Error = ""
	}
	s.mu.Unlock()
	switch {
	case err != nil && errors.Is(err, site.ErrNoPolicy):
		s.Logf("overlay: %v; waiting for one (nothing changed)", err)
	case err != nil:
		s.Logf("overlay: sync failed, allocations unchanged: %v", err)
		s.unhealthy = true
		_ = ready.Unhealthy(err.Error())
	case s.unhealthy:
		s.unhealthy = false
		_ = ready.Healthy()
	}
}

// syncOnce allocates for the applied policy, then makes the interface
// carry the allocator's table. When the policy cannot be applied (it is
// missing or damaged, collides, asks for a taken address, exhausts a
// pool) the table stays as it was and the interface is still reconciled
// to it: the endpoints already handed out stay up, and an interface
// deleted or emptied by someone (or not yet created after a reboot) gets
// them back, instead of staying down until the policy is fixed.
//
// Except while another interface looks like the overlay interface
// renamed, which took the endpoints (or, before any, the gate's
// address) with it (see hostNetworks): then the interface is not
// reconciled at all, the overlay is degraded and says so, with the
// command that repairs it. Made again beside the renamed one, it would
// carry the same addresses twice, the ambiguity the collision refusal
// is about; the renamed interface is not the service's to touch either
// (see allocate).
func (s *Service) syncOnce() error {
	nets, renamed, err := s.hostNetworks()
	if err != nil {
		return err // what else is on the host is unknown: nothing changes
	}
	if s.watch != nil {
		names := make([]string, len(renamed))
		for i, r := range renamed {
			names[i] = r.name
		}
		s.watch.setRenamed(names)
	}
	sha, warnText, perr := s.allocate(nets)
	gate, prefix := s.alloc.Gate()
	if !prefix.IsValid() {
		return perr // nothing allocated yet, nothing to put on the interface
	}
	if s.recon == nil || s.recon.prefix != prefix {
		r, err := NewReconciler(s.Handle, s.Link, s.LinkKind, prefix)
		if err != nil {
			return errors.Join(perr, err)
		}
		if s.standIn != "" {
			r.kind = s.standIn
		}
		s.recon = r
	}
	table := s.alloc.Table()
	want := make([]netip.Addr, 0, len(table)+1)
	want = append(want, gate)
	for _, e := range table {
		want = append(want, e.Addr)
	}
	var rerr error
	if len(renamed) > 0 {
		rerr = s.degraded(renamed)
	} else {
		var res Result
		res, rerr = s.recon.Reconcile(want)
		if res.Index != 0 && s.watch != nil {
			s.watch.index.Store(int32(res.Index))
		}
		s.logRepair(res)
	}

	s.mu.Lock()
	snap := Snapshot{
		PolicySHA256: s.snap.PolicySHA256, // the policy the table serves
		Prefix:       prefix,
		Gate:         gate,
		Entries:      table,
		Quarantined:  s.alloc.Quarantined(),
		Pools:        s.alloc.Pools(),
		Warnings:     s.snap.Warnings,
		Link:         s.Link,
		Syncs:        s.snap.Syncs,
	}
	if perr == nil {
		snap.PolicySHA256, snap.Warnings = sha, warnText
	}
	s.snap = snap
	s.mu.Unlock()
	return errors.Join(perr, rerr)
}

// renamedLink is an interface that looks like the overlay interface
// renamed (see hostNetworks).
type renamedLink struct {
	name string
	// gate, when valid, is the gate's overlay address the interface
	// carries alone under the bare interface name as label (the overlay
	// interface renamed before it carried any endpoint).
	gate netip.Addr
	// endpoint, when valid, is the one asset endpoint (of asset) the
	// interface carries alone under the bare interface name as label
	// (the overlay interface renamed while it carried that endpoint and
	// not the gate's address). Neither valid: the interface carries
	// addresses labelled "<name>:ov".
	endpoint netip.Addr
	asset    string
}

// degraded is the error of a sync that leaves the interface alone
// because renamed look like the overlay interface renamed: what it did
// not do, why, and for each the command that repairs it. The renamed
// interface is not deleted or renamed back by the service: it carries no
// mark of the overlay's (only its addresses' labels do, and anyone can
// set those).
func (s *Service) degraded(renamed []renamedLink) error {
	names := make([]string, len(renamed))
	for i, r := range renamed {
		names[i] = r.name
	}
	list := strings.Join(names, ", ")
	errs := []error{fmt.Errorf("overlay: %s not reconciled, degraded: no second interface is made to carry the %s %s carries, and %s is left as it is", s.Link, carried(renamed), list, list)}
	for _, r := range renamed {
		name := r.name
		if r.gate.IsValid() {
			errs = append(errs, fmt.Errorf("overlay: interface %s carries only the gate's overlay address %s/32, labelled %q, as the overlay interface %s renamed to %s before it carried any endpoint would: if it is, delete it and the overlay recreates %s with the gate's address at once: ip link del %s",
				name, r.gate, name, s.Link, name, s.Link, name))
			continue
		}
		if r.endpoint.IsValid() {
			errs = append(errs, fmt.Errorf("overlay: interface %s carries only the endpoint of %s, %s/32, labelled %q, as the overlay interface %s renamed to %s while it carried that one endpoint and not the gate's address would: if it is, delete it and the overlay recreates %s with its endpoints at once: ip link del %s",
				name, r.asset, r.endpoint, name, s.Link, name, s.Link, name))
			continue
		}
		errs = append(errs, fmt.Errorf("overlay: interface %s carries addresses labelled %q, as the overlay interface %s renamed to %s would: if it is, delete it and the overlay recreates %s with its endpoints at once: ip link del %s",
			name, name+labelSuffix, s.Link, name, s.Link, name))
	}
	return errors.Join(errs...)
}

// carried names what renamed carry, for the degraded line: "gate's
// overlay address" when each carries that alone, "endpoint" for one
// carrying one endpoint alone, "endpoints" when each carries addresses
// labelled "<name>:ov", else "overlay addresses".
func carried(renamed []renamedLink) string {
	var gate, one, labelled int
	for _, r := range renamed {
		switch {
		case r.gate.IsValid():
			gate++
		case r.endpoint.IsValid():
			one++
		default:
			labelled++
		}
	}
	switch len(renamed) {
	case gate:
		return "gate's overlay address"
	case labelled:
		return "endpoints"
	}
	if one == 1 && len(renamed) == 1 {
		return "endpoint"
	}
	return "overlay addresses"
}

// logRepair reports what a reconcile changed on the interface, and
// why when a kernel event asked for it; a reconcile that changed nothing
// (the event was the service's own change, or the drift was already
// repaired) says nothing.
func (s *Service) logRepair(res Result) {
	var did []string
	switch {
	case res.Created:
		did = append(did, "created")
	case res.Up:
		did = append(did, "brought up")
	}
	if len(res.Added)+len(res.Removed) > 0 {
		did = append(did, fmt.Sprintf("%d addresses added, %d removed", len(res.Added), len(res.Removed)))
	}
	if len(did) == 0 {
		return
	}
	msg := fmt.Sprintf("overlay: %s: %s", s.Link, strings.Join(did, ", "))
	if s.repairReason != "" {
		msg += " (repair after " + s.repairReason + ")"
	}
	s.Logf("%s", msg)
}

// allocate applies the policy to the allocator, checking it against
// nets, the host's other networks; on any error nothing changes. It
// returns the policy's sha256 and the prefix warnings.
func (s *Service) allocate(nets []alloc.Network) ([32]byte, []string, error) {
	applied, err := site.LoadApplied(s.PolicyPath)
	if err != nil {
		return [32]byte{}, nil, err
	}
	st := &applied.Site
	cfg := alloc.Config{
		Prefix:     st.Overlay.Prefix,
		Gate:       st.Overlay.Gate,
		Quarantine: st.Overlay.Quarantine,
		PoolSize:   st.Overlay.PoolSize,
		Pools:      map[string]alloc.PoolSpec{},
	}
	for _, p := range st.Overlay.Pools {
		cfg.Pools[p.Zone] = alloc.PoolSpec{Size: p.Size, Prefix: p.Prefix}
	}
	reqs := make([]alloc.Request, len(st.Assets))
	for i, as := range st.Assets {
		reqs[i] = alloc.Request{Asset: as.Name, Zone: as.Zone, Pinned: as.Overlay}
	}

	nets = slices.Clone(nets)
	for _, z := range st.Zones {
		nets = append(nets, alloc.Network{Name: "zone " + z.Name, Prefix: z.Subnet})
	}
	warns, err := alloc.CheckCollisions(st.Overlay.Prefix, nets)
	if err != nil {
		// A renamed overlay interface collides too; syncOnce says what
		// repairs it (degraded).
		return [32]byte{}, nil, err
	}
	var warnText []string
	for _, w := range warns {
		warnText = append(warnText, w.String())
	}
	if key := fmt.Sprint(st.Overlay.Prefix, warnText); key != s.warned {
		s.warned = key
		for _, w := range warnText {
			s.Logf("overlay: warning: %s", w)
		}
	}

	diff, err := s.alloc.Apply(cfg, reqs, s.Now())
	if err != nil {
		return [32]byte{}, nil, err
	}
	for _, e := range diff.Added {
		s.Logf("overlay: %s (zone %s) -> %s", e.Asset, e.Zone, e.Addr)
	}
	for _, e := range diff.Moved {
		s.Logf("overlay: %s moved to its pinned %s", e.Asset, e.Addr)
	}
	for _, h := range diff.Released {
		if h.GateHeld() {
			s.Logf("overlay: the gate moved off %s, quarantined until %s", h.Addr, h.Until.Format(time.RFC3339))
			continue
		}
		s.Logf("overlay: %s released %s, quarantined until %s", h.Asset, h.Addr, h.Until.Format(time.RFC3339))
	}
	for _, h := range diff.Expired {
		who := h.Asset
		if h.GateHeld() {
			who = "the gate"
		}
		s.Logf("overlay: quarantine of %s (released by %s) ended; the address is free again", h.Addr, who)
	}
	return applied.SourceSHA256, warnText, nil
}

// hostNetworks lists the subnets of every other interface of the
// namespace (uplink, downlinks), which the overlay must not overlap, and
// the interfaces that look like the overlay interface renamed to <name>:
// those carrying an address labelled "<name>:ov" (the kernel renames the
// labels with the interface), and those carrying nothing but the gate's
// overlay /32 or one endpoint's /32 (of the allocator's table) labelled
// "<name>" (the kernel gives the first address of a renamed interface
// the bare name, so an overlay interface renamed with one address, the
// gate's before any endpoint, or an endpoint's without the gate's, has
// no "<name>:ov" label left).
func (s *Service) hostNetworks() (nets []alloc.Network, renamed []renamedLink, err error) {
	links, err := s.Handle.LinkList()
	if err != nil {
		return nil, nil, fmt.Errorf("overlay: list interfaces: %w", err)
	}
	gate, _ := s.alloc.Gate() // as the last allocation left it (not valid: none yet)
	table := s.alloc.Table()
	for _, l := range links {
		name := l.Attrs().Name
		if name == s.Link || l.Attrs().Flags&net.FlagLoopback != 0 {
			continue
		}
		as, err := s.Handle.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return nil, nil, fmt.Errorf("overlay: list addresses of %s: %w", name, err)
		}
		for _, a := range as {
			if a.Label == name+labelSuffix {
				renamed = append(renamed, renamedLink{name: name})
				break
			}
		}
		if len(as) == 1 && as[0].Label == name {
			a, ok := netip.AddrFromSlice(as[0].IP.To4())
			ones, bits := as[0].Mask.Size()
			i := slices.IndexFunc(table, func(e alloc.Entry) bool { return e.Addr == a })
			switch {
			case !ok || ones != 32 || bits != 32:
			case gate.IsValid() && a == gate:
				renamed = append(renamed, renamedLink{name: name, gate: gate})
			case i >= 0:
				renamed = append(renamed, renamedLink{name: name, endpoint: a, asset: table[i].Asset})
			}
		}
		for _, a := range as {
			p, ok := netip.AddrFromSlice(a.IP.To4())
			ones, _ := a.Mask.Size()
			if ok {
				nets = append(nets, alloc.Network{Name: "interface " + name, Prefix: netip.PrefixFrom(p, ones).Masked()})
			}
		}
	}
	sort.Slice(nets, func(i, j int) bool { return nets[i].Name < nets[j].Name })
	sort.Slice(renamed, func(i, j int) bool { return renamed[i].name < renamed[j].name })
	return nets, renamed, nil
}
