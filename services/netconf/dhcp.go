package netconf

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// DHCPState is the client's RFC 2131 state.
type DHCPState string

// Client states.
const (
	StateInit       DHCPState = "init"
	StateInitReboot DHCPState = "init-reboot"
	StateSelecting  DHCPState = "selecting"
	StateRequesting DHCPState = "requesting"
	StateBound      DHCPState = "bound"
	StateRenewing   DHCPState = "renewing"
	StateRebinding  DHCPState = "rebinding"
	StateStopped    DHCPState = "stopped"
)

// DHCPStatus is the client's state and counters.
type DHCPStatus struct {
	State     DHCPState `cbor:"1,keyasint" json:"state"`
	Since     time.Time `cbor:"2,keyasint" json:"since"`
	Lease     *Lease    `cbor:"3,keyasint,omitempty" json:"lease,omitempty"`
	Leases    uint64    `cbor:"4,keyasint" json:"leases"`
	Renewals  uint64    `cbor:"5,keyasint" json:"renewals"`
	Rebinds   uint64    `cbor:"6,keyasint" json:"rebinds"`
	NAKs      uint64    `cbor:"7,keyasint" json:"naks"`
	Expiries  uint64    `cbor:"8,keyasint" json:"expiries"`
	LastError string    `cbor:"9,keyasint,omitempty" json:"last_error,omitempty"`
	// Refusals counts the ACKs not applied (checkACK, Protected).
	Refusals uint64 `cbor:"10,keyasint,omitempty" json:"refusals,omitempty"`
}

// DHCP timing defaults (RFC 2131 4.1 and 4.4.5).
const (
	DefaultBackoffMin = 4 * time.Second
	DefaultBackoffMax = 64 * time.Second
	DefaultRetryMin   = 60 * time.Second
	// DefaultSelectWindow is how long after a DISCOVER an acceptable
	// offer from a server passed over (AvoidFor) waits for one from
	// another server before it is taken.
	DefaultSelectWindow = 3 * time.Second
	// DefaultAvoidFor is how long a server whose ACK was refused is
	// passed over when another server offers.
	DefaultAvoidFor = 5 * time.Minute
	// requestWait is how long a REQUEST in SELECTING waits for its ACK
	// or NAK (the first retransmission delay of RFC 2131 4.1).
	requestWait = 4 * time.Second
	// refusedOfferEvery is the least time between two refused-offer
	// events about the same server (offerLimiter).
	refusedOfferEvery = time.Minute
)

// DHCPClient runs the lease life cycle on the uplink.
type DHCPClient struct {
	Link   string
	Handle *netlink.Handle
	// NS is Handle's namespace, where sockets are opened and the
	// uplink's promote_secondaries set (tests); zero: the process's own.
	NS       netns.NsHandle
	Resolver *Resolver
	// HintPath remembers the last address (no secret) so a restart asks
	// for it again (INIT-REBOOT); empty: nothing is stored.
	HintPath string
	// BackoffMin and BackoffMax bound the wait between discovery
	// attempts (doubling); RetryMin is the shortest wait between renewal
	// or rebinding retransmissions.
	BackoffMin, BackoffMax, RetryMin time.Duration
	Events                           *Ring
	Logf                             func(string, ...any)
	// OnChange is called after every state change.
	OnChange func()
	// Protected returns the ranges a lease must not overlap (the OT
	// zones, the downlinks, the overlay); nil: none. An offer or a lease
	// that does, or that fails checkACK, is refused: nothing of it
	// reaches the uplink. A refused offer is passed over for another
	// server's (selectOffer); a refused ACK is released and its server
	// passed over for AvoidFor (refuseACK).
	Protected func() []Protected
	// SelectWindow (0: DefaultSelectWindow) is how long after a DISCOVER
	// an acceptable offer from a server passed over waits for another
	// server's; AvoidFor (0: DefaultAvoidFor) is how long a server whose
	// ACK was refused is passed over.
	SelectWindow, AvoidFor time.Duration

	mu     sync.Mutex
	status DHCPStatus
	up     *uplinkLink
	hw     net.HardwareAddr

	// Used by Run's goroutine only.
	avoid  map[netip.Addr]time.Time // server -> passed over until
	offers offerLimiter
	// kept: the uplink still carries the address a previous run left
	// (keepPrevious), until the INIT-REBOOT for it is answered.
	kept bool

	recheckOnce sync.Once
	recheckCh   chan struct{} // Recheck's signal to a held lease
}

// Recheck has the client check the lease it holds against Protected
// again (the service calls it after each policy sync): a lease that a
// changed policy no longer lets the uplink carry (a zone added inside
// it) is dropped, its address, route and DNS removed, and a new one
// sought. It never blocks.
func (c *DHCPClient) Recheck() {
	select {
	case c.recheck() <- struct{}{}:
	default:
	}
}

func (c *DHCPClient) recheck() chan struct{} {
	c.recheckOnce.Do(func() { c.recheckCh = make(chan struct{}, 1) })
	return c.recheckCh
}

// hold waits until t, or ctx's end (false), holding the lease nl: on a
// Recheck it checks nl again, and one the uplink must no longer carry is
// dropped (false, true).
func (c *DHCPClient) hold(ctx context.Context, nl *nclient4.Lease, t time.Time) (ok, dropped bool) {
	tm := time.NewTimer(max(time.Until(t), 0))
	defer tm.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, false
		case <-tm.C:
			return ctx.Err() == nil, false
		case <-c.recheck():
			if err := c.check(nl); err != nil {
				l := leaseFromACK(nl.ACK, nl.CreationTime)
				c.lost(EventRefused, &l, fmt.Sprintf("the lease held, %s from server %s, is refused now: %v; dropped, looking for another", l.Address, l.Server, err))
				return false, true
			}
			c.recheckDNS(nl)
		}
	}
}

// leaseToUse reads the lease in nl as the uplink uses it: its DNS
// servers on the OT side (Protected) or not a host's left out
// (Lease.uplinkDNS).
func (c *DHCPClient) leaseToUse(nl *nclient4.Lease) Lease {
	l := leaseFromACK(nl.ACK, nl.CreationTime)
	var prot []Protected
	if c.Protected != nil {
		prot = c.Protected()
	}
	l.uplinkDNS(prot)
	return l
}

// sayNotUsed logs what of l the uplink does not use, when that differs
// from the lease held (a renewal that says the same is not logged
// again).
func (c *DHCPClient) sayNotUsed(l Lease) {
	c.mu.Lock()
	old := c.status.Lease
	c.mu.Unlock()
	if len(l.NotUsed) == 0 || old != nil && old.Server == l.Server && slices.Equal(old.NotUsed, l.NotUsed) {
		return
	}
	for _, n := range l.NotUsed {
		c.Logf("netconf: dhcp on %s: server %s: %s", c.Link, l.Server, n)
	}
}

// recheckDNS writes the held lease's DNS servers again when the ranges
// protected now (a policy sync) change which of them are used: a zone
// added around one takes it out of resolv.conf.
func (c *DHCPClient) recheckDNS(nl *nclient4.Lease) {
	l := c.leaseToUse(nl)
	c.mu.Lock()
	held := c.status.Lease
	c.mu.Unlock()
	if held == nil || slices.Equal(held.DNS, l.DNS) {
		return
	}
	c.sayNotUsed(l)
	c.Logf("netconf: dhcp on %s: the lease's DNS servers in use are now %v (were %v)", c.Link, l.DNS, held.DNS)
	if err := c.Resolver.Write(c.up.source, l.DNS, l.Search); err != nil {
		c.fail(err)
	}
	c.update(func(s *DHCPStatus) {
		if s.Lease != nil {
			nl := *s.Lease
			nl.DNS, nl.NotUsed = l.DNS, l.NotUsed
			s.Lease = &nl
		}
	})
}

// Status returns a copy of the client's status.
func (c *DHCPClient) Status() DHCPStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.status
	if s.Lease != nil {
		l := *s.Lease
		s.Lease = &l
	}
	return s
}

func (c *DHCPClient) update(fn func(s *DHCPStatus)) {
	c.mu.Lock()
	old := c.status.State
	fn(&c.status)
	if c.status.State != old {
		c.status.Since = time.Now()
	}
	c.mu.Unlock()
	if c.OnChange != nil {
		c.OnChange()
	}
}

func (c *DHCPClient) setState(st DHCPState) { c.update(func(s *DHCPStatus) { s.State = st }) }

func (c *DHCPClient) fail(err error) {
	c.Logf("netconf: dhcp on %s: %v", c.Link, err)
	c.update(func(s *DHCPStatus) { s.LastError = err.Error() })
}

func (c *DHCPClient) event(kind EventKind, l *Lease, detail string) {
	e := Event{Kind: kind, Link: c.Link, Detail: detail}
	if l != nil {
		e.IP = l.Address.String()
		if detail == "" {
			e.Detail = fmt.Sprintf("server %s, lease %s", l.Server, l.Duration)
		}
	}
	c.Events.Add(e)
}

// Run holds a lease on the uplink until ctx ends, then releases it and
// removes the address, route and DNS settings. It returns an error only
// when the uplink cannot be used at all.
func (c *DHCPClient) Run(ctx context.Context) error {
	if c.BackoffMin <= 0 {
		c.BackoffMin = DefaultBackoffMin
	}
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = max(DefaultBackoffMax, c.BackoffMin)
	}
	if c.RetryMin <= 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.SelectWindow <= 0 {
		c.SelectWindow = DefaultSelectWindow
	}
	if c.AvoidFor <= 0 {
		c.AvoidFor = DefaultAvoidFor
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	if c.Events == nil {
		c.Events = NewRing(0, nil)
	}
	if c.Resolver == nil {
		c.Resolver = &Resolver{}
	}
	c.up = &uplinkLink{h: c.Handle, ns: c.NS, name: c.Link, proto: unix.RTPROT_DHCP, resolver: c.Resolver, source: "dhcp on " + c.Link}
	if err := c.up.up(); err != nil {
		return err
	}
	l, err := c.up.link()
	if err != nil {
		return err
	}
	c.hw = l.Attrs().HardwareAddr
	if len(c.hw) != 6 {
		return fmt.Errorf("netconf: uplink %s has no Ethernet address (%q)", c.Link, c.hw)
	}
	c.keepPrevious()
	var lease *nclient4.Lease
	for {
		if lease == nil {
			lease = c.acquire(ctx)
			if lease == nil {
				c.setState(StateStopped)
				return nil
			}
			c.bind(lease, EventLease)
		}
		next := c.maintain(ctx, lease)
		if ctx.Err() != nil {
			c.release(lease)
			c.setState(StateStopped)
			return nil
		}
		lease = next
	}
}

// bind applies a fresh or renewed lease.
func (c *DHCPClient) bind(nl *nclient4.Lease, kind EventKind) {
	l := c.leaseToUse(nl)
	if len(l.badNames) > 0 {
		c.Logf("netconf: dhcp on %s: server %s: domain names %q are not DNS names: not used in %s", c.Link, l.Server, l.badNames, c.Resolver.Path)
	}
	c.sayNotUsed(l)
	c.up.source = fmt.Sprintf("dhcp on %s from %s", c.Link, l.Server)
	_, err := c.up.apply(UplinkConfig{Address: l.Address, Lifetime: time.Until(l.Expiry()), Gateway: l.Gateway, DNS: l.DNS, Search: l.Search})
	if err != nil {
		c.fail(err)
	}
	c.update(func(s *DHCPStatus) {
		old := s.Lease
		s.Lease = &l
		s.State = StateBound
		switch kind {
		case EventLease:
			s.Leases++
		case EventRenewed:
			s.Renewals++
		case EventRebound:
			s.Rebinds++
		}
		if err == nil {
			s.LastError = ""
		}
		if old == nil || old.Address != l.Address {
			c.saveHint(l.Address.Addr())
		}
	})
	c.event(kind, &l, "")
}

// lost drops a lease: the address, route and DNS go.
func (c *DHCPClient) lost(kind EventKind, l *Lease, detail string) {
	if err := c.up.clear(); err != nil {
		c.fail(err)
	}
	c.update(func(s *DHCPStatus) {
		s.Lease = nil
		s.State = StateInit
		switch kind {
		case EventExpired:
			s.Expiries++
		case EventNAK:
			s.NAKs++
		case EventRefused:
			s.Refusals++
		}
	})
	c.event(kind, l, detail)
}

// sleepUntil waits until t or ctx's end (false).
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

// retransmitAt is when to try again before limit: half the time left,
// at least RetryMin, never after limit (RFC 2131 4.4.5).
func (c *DHCPClient) retransmitAt(limit time.Time) time.Time {
	wait := time.Until(limit) / 2
	if wait < c.RetryMin {
		wait = c.RetryMin
	}
	if t := time.Now().Add(wait); t.Before(limit) {
		return t
	}
	return limit
}

// maintain keeps lease through BOUND, RENEWING and REBINDING. It returns
// the renewed lease, or nil when the lease was lost (NAK or expiry), or
// lease itself when ctx ended.
func (c *DHCPClient) maintain(ctx context.Context, nl *nclient4.Lease) *nclient4.Lease {
	l := leaseFromACK(nl.ACK, nl.CreationTime)
	if ok, dropped := c.hold(ctx, nl, l.Renew()); !ok {
		if dropped {
			return nil
		}
		return nl
	}
	for _, phase := range []struct {
		state DHCPState
		until time.Time
		kind  EventKind
	}{{StateRenewing, l.Rebind(), EventRenewed}, {StateRebinding, l.Expiry(), EventRebound}} {
		c.setState(phase.state)
		for time.Now().Before(phase.until) {
			next := c.retransmitAt(phase.until)
			actx, cancel := context.WithDeadline(ctx, next)
			renewed, err := c.renew(actx, nl, phase.state == StateRenewing)
			cancel()
			if ctx.Err() != nil {
				return nl
			}
			var nak *nclient4.ErrNak
			var cerr error
			if err == nil {
				cerr = c.check(renewed)
			}
			switch {
			case err == nil && cerr == nil:
				c.bind(renewed, phase.kind)
				return renewed
			case err == nil:
				// Not applied: the lease held stays until it ends, and a
				// later answer may still renew it. Nothing is released
				// (the binding is the held lease's) or declined.
				c.refuse(renewed, phase.state, cerr, "; the lease held is kept")
			case errors.As(err, &nak):
				c.lost(EventNAK, &l, fmt.Sprintf("server refused %s in %s: %s", l.Address, phase.state, nak.Nak.Message()))
				return nil
			case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nclient4.ErrNoResponse):
				c.Logf("netconf: dhcp on %s: no answer while %s, %s left", c.Link, phase.state, time.Until(phase.until).Round(time.Second))
			default:
				c.fail(fmt.Errorf("%s: %w", phase.state, err))
			}
			if ok, dropped := c.hold(ctx, nl, next); !ok {
				if dropped {
					return nil
				}
				return nl
			}
		}
	}
	c.lost(EventExpired, &l, fmt.Sprintf("no server answered; lease of %s ended", l.Address))
	return nil
}

// renew sends one REQUEST for the held address: unicast to the server
// (RENEWING) or broadcast (REBINDING), and waits for the answer until
// ctx's deadline.
func (c *DHCPClient) renew(ctx context.Context, nl *nclient4.Lease, unicast bool) (*nclient4.Lease, error) {
	var cl *nclient4.Client
	err := inNetNS(c.NS, func() error {
		var err error
		opts := []nclient4.ClientOpt{nclient4.WithRetry(1), nclient4.WithTimeout(time.Hour), nclient4.WithHWAddr(c.hw)}
		if unicast {
			opts = append(opts,
				nclient4.WithUnicast(&net.UDPAddr{IP: nl.ACK.YourIPAddr, Port: nclient4.ClientPort}),
				nclient4.WithServerAddr(&net.UDPAddr{IP: nl.ACK.ServerIdentifier(), Port: nclient4.ServerPort}))
		}
		cl, err = nclient4.New(c.Link, opts...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open DHCP socket on %s: %w", c.Link, err)
	}
	defer cl.Close()
	xid, err := dhcpv4.GenerateTransactionID()
	if err != nil {
		return nil, err
	}
	// RENEWING and REBINDING requests carry ciaddr and no server id or
	// requested address (RFC 2131 4.3.2).
	mods := []dhcpv4.Modifier{dhcpv4.WithTransactionID(xid), requestedOptions,
		dhcpv4.WithoutOption(dhcpv4.OptionServerIdentifier), dhcpv4.WithoutOption(dhcpv4.OptionRequestedIPAddress)}
	if unicast {
		// RENEWING asks the server that gave the lease; nclient4 takes
		// only its answer.
		return cl.Renew(ctx, nl, mods...)
	}
	// REBINDING asks any server (RFC 2131 4.4.5): the one that gave the
	// lease is gone or unreachable, and another server of the network
	// may extend it. nclient4's Renew would take only the first server's
	// answer, so the broadcast request is sent here and any server's ACK
	// or NAK (matched by transaction id) is the answer; the new lease
	// names that server, which later renewals then ask.
	req, err := dhcpv4.NewRenewFromAck(nl.ACK, append(mods, dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(nclient4.MaxMessageSize)))...)
	if err != nil {
		return nil, fmt.Errorf("build rebinding request: %w", err)
	}
	resp, err := cl.SendAndRead(ctx, nclient4.DefaultServers, req, nclient4.IsMessageType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak))
	if err != nil {
		return nil, err
	}
	if resp.MessageType() == dhcpv4.MessageTypeNak {
		return nil, &nclient4.ErrNak{Offer: nl.Offer, Nak: resp}
	}
	return &nclient4.Lease{Offer: resp, ACK: resp, CreationTime: time.Now()}, nil
}

// acquire gets a new lease: INIT-REBOOT with the remembered address
// first, then DISCOVER with exponential back-off. nil when ctx ended.
func (c *DHCPClient) acquire(ctx context.Context) *nclient4.Lease {
	var bc *nclient4.Client
	open := func() bool {
		if bc != nil {
			return true
		}
		err := inNetNS(c.NS, func() error {
			var err error
			bc, err = nclient4.New(c.Link, nclient4.WithRetry(1), nclient4.WithTimeout(time.Hour), nclient4.WithHWAddr(c.hw))
			return err
		})
		if err != nil {
			c.fail(fmt.Errorf("open DHCP socket on %s: %w", c.Link, err))
			bc = nil
			return false
		}
		return true
	}
	defer func() {
		if bc != nil {
			bc.Close()
		}
	}()
	if hint := c.loadHint(); hint.IsValid() && open() {
		if nl := c.initReboot(ctx, bc, hint); nl != nil {
			err := c.check(nl)
			if err == nil {
				c.kept = false // bind replaces it with the lease's
				return nl
			}
			c.saveHint(netip.Addr{}) // not to be asked for again
			c.refuseACK(nl, StateInitReboot, err)
		}
	}
	c.dropKept()
	backoff := c.BackoffMin
	for ctx.Err() == nil {
		start := time.Now()
		// The wait for an answer grows like the retransmission delay,
		// with +-1 s of jitter (RFC 2131 4.1).
		wait := backoff + time.Duration(rand.Int64N(int64(2*time.Second))) - time.Second
		wait = max(wait, time.Second)
		if open() {
			if nl := c.discover(ctx, bc, wait); nl != nil {
				return nl
			}
		}
		if !sleepUntil(ctx, start.Add(wait)) {
			return nil
		}
		backoff = min(backoff*2, c.BackoffMax)
	}
	return nil
}

// discover makes one DISCOVER, selects an offer (selectOffer) and
// REQUESTs it. nil: no acceptable offer within wait, a NAK, or an ACK
// refused (refuseACK).
func (c *DHCPClient) discover(ctx context.Context, bc *nclient4.Client, wait time.Duration) *nclient4.Lease {
	c.setState(StateSelecting)
	offer := c.selectOffer(ctx, bc, wait)
	if offer == nil {
		return nil
	}
	c.setState(StateRequesting)
	rctx, cancel := context.WithTimeout(ctx, requestWait)
	defer cancel()
	nl, err := bc.RequestFromOffer(rctx, offer, requestedOptions)
	var nak *nclient4.ErrNak
	switch {
	case errors.As(err, &nak):
		c.update(func(s *DHCPStatus) { s.NAKs++ })
		c.event(EventNAK, nil, fmt.Sprintf("server %s refused its own offer of %s: %s", offer.ServerIdentifier(), offer.YourIPAddr, nak.Nak.Message()))
		return nil
	case err != nil:
		if ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
			c.fail(fmt.Errorf("request %s: %w", offer.YourIPAddr, err))
		}
		return nil
	}
	if err := c.check(nl); err != nil {
		// The offer passed, the ACK does not: the server changed its
		// answer (or the policy changed in between).
		c.refuseACK(nl, StateRequesting, err)
		return nil
	}
	return nl
}

// release gives the lease back (unicast from the leased address, RFC
// 2131 4.4.6) and removes it from the uplink.
func (c *DHCPClient) release(nl *nclient4.Lease) {
	l := leaseFromACK(nl.ACK, nl.CreationTime)
	err := inNetNS(c.NS, func() error {
		cl, err := nclient4.New(c.Link, nclient4.WithHWAddr(c.hw),
			nclient4.WithUnicast(&net.UDPAddr{IP: nl.ACK.YourIPAddr, Port: nclient4.ClientPort}))
		if err != nil {
			return err
		}
		defer cl.Close()
		return cl.Release(nl)
	})
	detail := fmt.Sprintf("released to %s", l.Server)
	if err != nil {
		detail = fmt.Sprintf("release to %s failed: %v", l.Server, err)
		c.fail(fmt.Errorf("release: %w", err))
	}
	if err := c.up.clear(); err != nil {
		c.fail(err)
	}
	c.update(func(s *DHCPStatus) { s.Lease = nil })
	c.event(EventReleased, &l, detail)
}
