package netconf

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/internal/policywatch"
	"github.com/otgate/otgate/internal/ready"
	"github.com/otgate/otgate/site"
)

// Config is everything the service is told (flags in the command).
type Config struct {
	Uplink    Uplink
	Downlinks []string
	Addresses Addresses
	// PolicyPath is the compiled policy (zones and assets); absent: the
	// downlinks are configured from the flags alone until one appears.
	PolicyPath string
	SocketPath string
	Resolver   *Resolver
	// HintPath remembers the uplink's last DHCP address ("" : nothing).
	HintPath string
	// AbsentAfter and ProbeInterval tune the neighbour watch.
	AbsentAfter, ProbeInterval time.Duration
	// ReadyWait is how long readiness waits for the uplink's first
	// lease; after it the service is ready with the uplink "waiting for
	// lease".
	ReadyWait time.Duration
	// Poll is how often the policy file is checked for a change; Repair
	// how often the interfaces are reconciled anyway (drift repair).
	Poll, Repair time.Duration
	// DHCP timing (zero: RFC defaults).
	BackoffMin, BackoffMax, RetryMin time.Duration
}

// Service is the netconf service.
type Service struct {
	Config
	Handle *netlink.Handle
	NS     netns.NsHandle // Handle's namespace: sockets and sysctls (tests); zero: here
	Logf   func(string, ...any)
	// Notify tells init the service is ready (nil: ready.Notify).
	Notify func() error

	events  *Ring
	inv     *Inventory
	watcher *Watcher
	dhcp    *DHCPClient
	static  *StaticUplink
	recon   *Reconciler

	mu        sync.Mutex
	status    Status
	policy    policywatch.File
	unhealthy bool
	readyOnce sync.Once
	uplinkOK  chan struct{}
	upOnce    sync.Once
	reload    chan struct{}
	// gates is each zone's gate address ("10.77.0.1/24 on eth1") as the
	// last sync planned it, to log a zone whose address moved.
	gates map[string]string
	// protected are the ranges a DHCP lease must not overlap, as the
	// last sync planned them (DHCPClient.Protected); protectedSet: a
	// sync did (else protectUnknown's).
	protected    []Protected
	protectedSet bool

	// The uplink: flagUplink is what the flags said (Mode "": follow
	// the site file); Config.Uplink becomes the uplink in effect at the
	// first sync and stays so until the service restarts (see
	// planUplink). uplinkWarn and pending are the override warning and
	// the pending change as last reported.
	flagUplink  Uplink
	uplinkFixed bool
	uplinkFrom  string
	uplinkWarn  string
	pending     string
}

// Events is the service's events ring.
func (s *Service) Events() *Ring { return s.events }

// Inventory is the neighbour watch's inventory.
func (s *Service) Inventory() *Inventory { return s.inv }

func (s *Service) defaults() {
	if s.Logf == nil {
		s.Logf = func(string, ...any) {}
	}
	if s.Notify == nil {
		s.Notify = ready.Notify
	}
	if s.Resolver == nil {
		s.Resolver = &Resolver{Path: DefaultResolvConf, Logf: s.Logf}
	}
	if s.AbsentAfter == 0 {
		s.AbsentAfter = 5 * time.Minute
	}
	if s.ReadyWait == 0 {
		s.ReadyWait = 10 * time.Second
	}
	if s.Poll == 0 {
		s.Poll = 2 * time.Second
	}
	if s.Repair == 0 {
		s.Repair = 30 * time.Second
	}
	if s.reload == nil {
		s.reload = make(chan struct{}, 1)
	}
}

// New checks the configuration and prepares the service.
func New(cfg Config, h *netlink.Handle, logf func(string, ...any)) (*Service, error) {
	s := &Service{Config: cfg, Handle: h, Logf: logf, reload: make(chan struct{}, 1)}
	s.defaults()
	s.flagUplink = cfg.Uplink
	switch s.Uplink.Mode {
	case "", UplinkDHCP, UplinkStatic:
		if err := checkIfName(s.Uplink.Name); err != nil {
			return nil, fmt.Errorf("netconf: uplink: %w", err)
		}
	case UplinkNone:
	default:
		return nil, fmt.Errorf("netconf: unknown uplink mode %q (want %s, %s, %s, or none given: the site file's)", s.Uplink.Mode, UplinkDHCP, UplinkStatic, UplinkNone)
	}
	if s.Uplink.Mode == UplinkStatic && !s.Uplink.Address.IsValid() {
		return nil, fmt.Errorf("netconf: static uplink %s needs an address", s.Uplink.Name)
	}
	// The plan without a policy checks the flags themselves.
	if _, err := MakePlan(s.Uplink.Name, s.Downlinks, s.Addresses, nil); err != nil {
		return nil, err
	}
	return s, nil
}

// Run configures the interfaces, tells init it is ready, and keeps
// everything converged until ctx ends; then it releases the lease. The
// downlinks keep their configuration when the service stops.
func (s *Service) Run(ctx context.Context) error {
	s.defaults()
	s.policy = policywatch.File{Path: s.PolicyPath}
	s.events = NewRing(0, s.Logf)
	s.inv = NewInventory(s.AbsentAfter, s.events)
	s.watcher = &Watcher{Handle: s.Handle, NS: s.NS, Inventory: s.inv, ProbeInterval: s.ProbeInterval, Logf: s.Logf}
	s.recon = NewReconciler(s.Handle, s.NS)
	s.uplinkOK = make(chan struct{})
	s.status.Uplink = UplinkStatus{Name: s.Uplink.Name, Mode: s.Uplink.Mode, State: "starting"}

	var l interface{ Close() error }
	if s.SocketPath != "" {
		ln, err := listen(s.SocketPath)
		if err != nil {
			return err
		}
		l = ln
		go s.serve(ln)
	}
	defer func() {
		if l != nil {
			l.Close()
		}
	}()

	var wg sync.WaitGroup
	wctx, stopWatch := context.WithCancel(ctx)
	defer func() { stopWatch(); wg.Wait() }()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.watcher.Run(wctx); err != nil {
			s.Logf("netconf: neighbour watch stopped: %v", err)
		}
	}()

	// The first sync reads the policy and with it fixes the uplink's
	// configuration for this run (planUplink).
	s.sync()
	s.mu.Lock()
	s.status.Uplink.Mode, s.status.Uplink.Source = s.Uplink.Mode, s.uplinkFrom
	switch s.Uplink.Mode {
	case UplinkDHCP:
		s.status.Uplink.State = "waiting for lease"
	case UplinkNone:
		s.status.Uplink.State = "not managed"
	}
	s.mu.Unlock()
	s.Logf("netconf: uplink %s: %s (%s)", s.Uplink.Name, s.Uplink, s.uplinkFrom)
	s.dropOtherMode()

	switch s.Uplink.Mode {
	case UplinkStatic:
		s.static = NewStaticUplink(s.Handle, s.NS, s.Uplink, s.Resolver)
		s.static.Protected, s.static.Logf = s.protectedNow, s.Logf
		s.applyStatic()
	case UplinkDHCP:
		s.dhcp = &DHCPClient{Link: s.Uplink.Name, Handle: s.Handle, NS: s.NS, Resolver: s.Resolver, HintPath: s.HintPath,
			BackoffMin: s.BackoffMin, BackoffMax: s.BackoffMax, RetryMin: s.RetryMin, Events: s.events, Logf: s.Logf,
			OnChange: s.dhcpChanged, Protected: s.protectedNow}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.dhcp.Run(ctx); err != nil {
				s.Logf("netconf: dhcp on %s stopped: %v", s.Uplink.Name, err)
				s.setUplinkError(err)
			}
		}()
	default:
		s.upOnce.Do(func() { close(s.uplinkOK) })
	}

	readyWait := time.NewTimer(s.ReadyWait)
	defer readyWait.Stop()
	select {
	case <-s.uplinkOK:
	case <-readyWait.C:
		s.Logf("netconf: uplink %s: no lease after %s; ready anyway, waiting for lease", s.Uplink.Name, s.ReadyWait)
	case <-ctx.Done():
		return nil
	}
	s.markReady()

	loop := policywatch.Loop{File: &s.policy, Poll: s.Poll, Repair: s.Repair, Reload: s.reload}
	return loop.Run(ctx, func(why policywatch.Trigger) {
		if why != policywatch.Repair {
			s.Logf("netconf: %s", why)
		}
		s.sync()
		// A sync that changes the OT side can change which of a static
		// uplink's DNS servers are used (as for a held lease).
		if s.static != nil && (why == policywatch.Repair || s.static.DNSStale()) {
			s.applyStatic()
		}
	})
}

// dropOtherMode removes what a run in the other uplink mode left (its
// default route), so a mode changed at a restart takes over cleanly.
func (s *Service) dropOtherMode() {
	var other netlink.RouteProtocol
	switch s.Uplink.Mode {
	case UplinkDHCP:
		other = unix.RTPROT_STATIC
	case UplinkStatic:
		other = unix.RTPROT_DHCP
	default:
		return
	}
	changed, err := dropDefaultRoutes(s.Handle, s.Uplink.Name, other)
	if err != nil {
		s.Logf("netconf: uplink %s: %v", s.Uplink.Name, err)
	} else if changed {
		s.Logf("netconf: uplink %s: removed the default route of the previous %s configuration", s.Uplink.Name, map[netlink.RouteProtocol]string{unix.RTPROT_STATIC: "static", unix.RTPROT_DHCP: "dhcp"}[other])
	}
}

func (s *Service) markReady() {
	s.readyOnce.Do(func() {
		s.mu.Lock()
		s.status.Ready = true
		s.mu.Unlock()
		if err := s.Notify(); err != nil {
			s.Logf("netconf: notify init: %v", err)
		}
	})
}

func (s *Service) applyStatic() {
	changed, err := s.static.Apply()
	if changed {
		s.Logf("netconf: uplink %s configured: %s via %s", s.Uplink.Name, s.Uplink.Address, s.Uplink.Gateway)
	}
	s.mu.Lock()
	s.status.Uplink.State = "configured"
	s.status.Uplink.Address = s.Uplink.Address.String()
	if s.Uplink.Gateway.IsValid() {
		s.status.Uplink.Gateway = s.Uplink.Gateway.String()
	}
	s.status.Uplink.NotUsed = s.static.NotUsed()
	s.status.Uplink.Error = ""
	if err != nil {
		s.status.Uplink.Error = err.Error()
	}
	s.mu.Unlock()
	if err != nil {
		s.Logf("netconf: uplink %s: %v", s.Uplink.Name, err)
	}
	s.upOnce.Do(func() { close(s.uplinkOK) })
}

func (s *Service) setUplinkError(err error) {
	s.mu.Lock()
	s.status.Uplink.Error = err.Error()
	s.mu.Unlock()
}

// dhcpChanged mirrors the DHCP client's state into the status.
func (s *Service) dhcpChanged() {
	st := s.dhcp.Status()
	s.mu.Lock()
	u := &s.status.Uplink
	u.DHCP = &st
	u.Error = st.LastError
	if st.Lease != nil {
		u.State = "bound"
		u.Address = st.Lease.Address.String()
		u.Gateway = ""
		if st.Lease.Gateway.IsValid() {
			u.Gateway = st.Lease.Gateway.String()
		}
	} else {
		u.State = "waiting for lease"
		u.Address, u.Gateway = "", ""
	}
	s.mu.Unlock()
	if st.Lease != nil {
		s.upOnce.Do(func() { close(s.uplinkOK) })
	}
}

// sync reads the policy, plans the OT side and converges it. A bad
// policy or plan changes nothing (the last good state stays).
func (s *Service) sync() {
	s.policy.Mark()
	var zones []site.Zone
	var assets []site.Asset
	var sum [32]byte
	var warn []string
	var siteUp *site.Uplink // nil: no policy to say
	var st *site.Site       // nil: no policy (the default overlay prefix)
	if s.PolicyPath != "" {
		applied, err := site.LoadApplied(s.PolicyPath)
		switch {
		case errors.Is(err, site.ErrNoPolicy):
			warn = append(warn, "no applied policy yet: downlinks configured from flags only, no zones or assets")
		case err != nil:
			s.planUplink(nil)
			s.protectUnknown()
			s.syncFailed(fmt.Errorf("netconf: %w; nothing changed", err))
			return
		default:
			zones, assets, sum = applied.Site.Zones, applied.Site.Assets, applied.SourceSHA256
			st = &applied.Site
			u := applied.Site.UplinkSettings()
			siteUp = &u
		}
	}
	warn = append(warn, s.planUplink(siteUp)...)
	plan, err := MakePlan(s.Uplink.Name, s.Downlinks, s.Addresses, zones)
	if err != nil {
		s.syncFailed(fmt.Errorf("%w; nothing changed", err))
		return
	}
	res, rerr := s.recon.Reconcile(plan)
	for _, c := range res.Changes {
		s.Logf("netconf: %s", c)
	}
	s.logMovedGates(zones, plan)

	var decl []DeclaredAsset
	for _, a := range assets {
		z, _ := zoneByName(zones, a.Zone)
		decl = append(decl, DeclaredAsset{Name: a.Name, Zone: a.Zone, Link: z.IfName(), IP: a.Address, MAC: a.MAC})
	}
	s.inv.SetAssets(decl, time.Now())
	var wl []WatchLink
	for _, l := range plan.Links {
		wl = append(wl, WatchLink{Name: l.Name, Sources: l.Addresses})
	}
	s.watcher.SetLinks(wl)

	links := make([]LinkStatus, 0, len(plan.Links))
	for _, l := range plan.Links {
		ls := LinkStatus{Name: l.Name, Parent: l.Parent, VLAN: l.VLAN, Zones: l.Zones}
		for _, a := range l.Addresses {
			ls.Addresses = append(ls.Addresses, a.String())
		}
		links = append(links, ls)
	}
	s.mu.Lock()
	s.protected = protectedRanges(st, plan)
	s.protectedSet = true
	if s.dhcp != nil {
		// A policy that now protects part of the held lease drops it.
		s.dhcp.Recheck()
	}
	s.status.Links = links
	s.status.Warnings = append(warn, plan.Warnings...)
	s.status.Foreign = res.Foreign
	s.status.PolicySHA256 = sum
	s.status.Syncs++
	s.status.Error = ""
	if rerr != nil {
		s.status.Error = rerr.Error()
	}
	s.mu.Unlock()
	if rerr != nil {
		s.Logf("netconf: reconcile: %v", rerr)
		s.setHealth(rerr)
		return
	}
	s.setHealth(nil)
}

// protectUnknown sets the ranges a lease must not overlap when no sync
// has planned them yet and the policy cannot be read (its zones are
// unknown): the default overlay prefix, the downlinks' subnets from the
// flags, and the subnet of every address netconf put on an interface
// other than the uplink (a zone's gate address a previous run left,
// with its VLAN interface). Without it the first lease was checked
// against nothing at all. A later sync that reads the policy replaces
// them (and Rechecks the lease).
func (s *Service) protectUnknown() {
	s.mu.Lock()
	set := s.protectedSet
	s.mu.Unlock()
	if set {
		return // the last good sync's stay
	}
	plan, err := MakePlan(s.Uplink.Name, s.Downlinks, s.Addresses, nil)
	if err != nil {
		plan = &Plan{}
	}
	prot := protectedRanges(nil, plan)
	addrs, err := s.Handle.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		s.Logf("netconf: list addresses: %v; the lease is checked without the OT side's current ones", err)
	}
	for _, a := range addrs {
		p, ok := addrPrefix(a)
		if !ok || !strings.HasSuffix(a.Label, labelSuffix) || a.Label == OwnerLabel(s.Uplink.Name) {
			continue
		}
		prot = append(prot, Protected{Prefix: p.Masked(), What: fmt.Sprintf("the subnet of netconf's address %s on %s (the policy cannot be read)", p, strings.TrimSuffix(a.Label, labelSuffix))})
	}
	s.mu.Lock()
	s.protected = prot
	s.mu.Unlock()
}

// planUplink fixes the uplink in effect at the first sync: the flags'
// mode when one was given (a development override), else the site
// policy's uplink section (siteUp; nil when there is no readable policy:
// DHCP, the default). Later it only compares: a policy whose uplink
// differs from the one in effect is not applied live (a wrong address
// or gateway pushed remotely would cut off the management session that
// could correct it) but reported as pending until the next netconf
// restart or boot; with the flags in charge, a site file that disagrees
// is a warning. It returns the status warnings and logs each change of
// them once.
func (s *Service) planUplink(siteUp *site.Uplink) []string {
	if !s.uplinkFixed {
		s.uplinkFixed = true
		switch {
		case s.flagUplink.Mode != "":
			s.Uplink = s.flagUplink
			s.uplinkFrom = "from the flags"
		case siteUp != nil:
			s.Uplink = UplinkFromSite(s.flagUplink.Name, *siteUp)
			s.uplinkFrom = "from the site file"
		default:
			s.Uplink = Uplink{Name: s.flagUplink.Name, Mode: UplinkDHCP}
			s.uplinkFrom = "the default: no readable site policy"
		}
	}
	if siteUp != nil {
		want := UplinkFromSite(s.Uplink.Name, *siteUp)
		warn, pending := "", ""
		switch {
		case s.flagUplink.Mode == UplinkNone:
			// Not managed here at all (a development host): nothing to
			// disagree with.
		case s.flagUplink.Mode != "":
			if !s.Uplink.Same(want) {
				warn = fmt.Sprintf("uplink %s: %s from the flags overrides the site file's %s", s.Uplink.Name, s.Uplink, want)
			}
		case !s.Uplink.Same(want):
			pending = fmt.Sprintf("uplink change pending: %s -> %s; takes effect at the next restart", s.Uplink, want)
		}
		if warn != s.uplinkWarn && warn != "" {
			s.Logf("netconf: %s", warn)
		}
		if pending != s.pending {
			switch {
			case pending != "":
				s.Logf("netconf: %s", pending)
			case s.pending != "":
				s.Logf("netconf: uplink change withdrawn: the site file's uplink is again the one in effect (%s)", s.Uplink)
			}
		}
		s.uplinkWarn, s.pending = warn, pending
		s.mu.Lock()
		s.status.Uplink.Pending = pending
		s.mu.Unlock()
	}
	var out []string
	for _, w := range []string{s.uplinkWarn, s.pending} {
		if w != "" {
			out = append(out, w)
		}
	}
	return out
}

// logMovedGates logs each zone whose gate address (or its interface)
// differs from the last sync's: the reconcile's changes say what was
// removed and added, this line says why.
func (s *Service) logMovedGates(zones []site.Zone, plan *Plan) {
	gates := map[string]string{}
	for _, z := range zones {
		lp, ok := plan.Link(z.IfName())
		if !ok {
			continue
		}
		for _, a := range lp.Addresses {
			if a.Masked() == z.Subnet.Masked() {
				gates[z.Name] = fmt.Sprintf("%s on %s", a, lp.Name)
			}
		}
	}
	for _, z := range zones {
		old, had := s.gates[z.Name]
		if now, ok := gates[z.Name]; ok && had && now != old {
			s.Logf("netconf: zone %q: gate address moved from %s to %s", z.Name, old, now)
		}
	}
	s.gates = gates
}

func (s *Service) syncFailed(err error) {
	s.Logf("%v", err)
	s.mu.Lock()
	s.status.Syncs++
	s.status.Error = err.Error()
	s.mu.Unlock()
	s.setHealth(err)
}

func (s *Service) setHealth(err error) {
	switch {
	case err != nil && !s.unhealthy:
		s.unhealthy = true
		_ = ready.Unhealthy(err.Error())
	case err == nil && s.unhealthy:
		s.unhealthy = false
		_ = ready.Healthy()
	}
}

func zoneByName(zones []site.Zone, name string) (site.Zone, bool) {
	for _, z := range zones {
		if z.Name == name {
			return z, true
		}
	}
	return site.Zone{}, false
}

// Status returns the service's status with the inventory.
func (s *Service) Status() Status {
	s.mu.Lock()
	st := s.status
	st.Links = append([]LinkStatus(nil), s.status.Links...)
	st.Warnings = append([]string(nil), s.status.Warnings...)
	if s.status.Uplink.DHCP != nil {
		d := *s.status.Uplink.DHCP
		st.Uplink.DHCP = &d
	}
	s.mu.Unlock()
	if s.inv != nil {
		st.Assets = s.inv.Assets()
		st.Unknown = s.inv.Unknown()
	}
	return st
}

// Status is what `otgate netconf status` shows.
type Status struct {
	Ready        bool         `cbor:"1,keyasint" json:"ready"`
	Uplink       UplinkStatus `cbor:"2,keyasint" json:"uplink"`
	Links        []LinkStatus `cbor:"3,keyasint" json:"downlinks"`
	Warnings     []string     `cbor:"4,keyasint,omitempty" json:"warnings,omitempty"`
	Foreign      []string     `cbor:"5,keyasint,omitempty" json:"foreign,omitempty"`
	Error        string       `cbor:"6,keyasint,omitempty" json:"error,omitempty"`
	PolicySHA256 [32]byte     `cbor:"7,keyasint" json:"-"`
	Syncs        uint64       `cbor:"8,keyasint" json:"syncs"`
	Assets       []AssetView  `cbor:"9,keyasint" json:"assets"`
	Unknown      []Device     `cbor:"10,keyasint" json:"unknown_devices"`
}

// UplinkStatus is the uplink's part of Status.
type UplinkStatus struct {
	Name string     `cbor:"1,keyasint" json:"name"`
	Mode UplinkMode `cbor:"2,keyasint" json:"mode"`
	// State: "configured" (static), "bound" or "waiting for lease"
	// (DHCP), "not managed" (none).
	State   string      `cbor:"3,keyasint" json:"state"`
	Address string      `cbor:"4,keyasint,omitempty" json:"address,omitempty"`
	Gateway string      `cbor:"5,keyasint,omitempty" json:"gateway,omitempty"`
	DHCP    *DHCPStatus `cbor:"6,keyasint,omitempty" json:"dhcp,omitempty"`
	Error   string      `cbor:"7,keyasint,omitempty" json:"error,omitempty"`
	// Pending is a change of the site file's uplink not applied yet:
	// "uplink change pending: dhcp -> static 192.168.10.5/24 via
	// 192.168.10.1; takes effect at the next restart" (also a warning).
	Pending string `cbor:"8,keyasint,omitempty" json:"pending,omitempty"`
	// Source says where the uplink's configuration came from: "from the
	// site file", "from the flags", or the default.
	Source string `cbor:"9,keyasint,omitempty" json:"source,omitempty"`
	// NotUsed says which DNS servers of a static uplink are not used,
	// and why (on the OT side; a lease's are in DHCP.Lease.NotUsed).
	NotUsed []string `cbor:"10,keyasint,omitempty" json:"not_used,omitempty"`
}

// LinkStatus is one planned downlink.
type LinkStatus struct {
	Name      string   `cbor:"1,keyasint" json:"name"`
	Parent    string   `cbor:"2,keyasint,omitempty" json:"parent,omitempty"`
	VLAN      int      `cbor:"3,keyasint,omitempty" json:"vlan,omitempty"`
	Addresses []string `cbor:"4,keyasint,omitempty" json:"addresses,omitempty"`
	Zones     []string `cbor:"5,keyasint,omitempty" json:"zones,omitempty"`
}

// Reload asks for a policy re-read and reconcile at once (SIGHUP).
func (s *Service) Reload() {
	select {
	case s.reload <- struct{}{}:
	default:
	}
}

// protectedNow is DHCPClient.Protected: the ranges of the last sync.
func (s *Service) protectedNow() []Protected {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Protected(nil), s.protected...)
}
