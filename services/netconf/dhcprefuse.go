package netconf

// The lease check of the DHCP client and what follows a refusal: an OFFER
// passed over (selectOffer), an ACK released and its server avoided for a
// while, and the rate limit on refused-offer events.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// check says why the uplink must not take the lease in nl (nil: take it).
func (c *DHCPClient) check(nl *nclient4.Lease) error { return c.checkMsg(nl.ACK) }

// checkMsg says why the uplink must not take the lease an ACK or an
// OFFER describes (nil: take it).
func (c *DHCPClient) checkMsg(m *dhcpv4.DHCPv4) error {
	if err := checkACK(m); err != nil {
		return err
	}
	if c.Protected == nil {
		return nil
	}
	return checkProtected(leaseFromACK(m, time.Now()), c.Protected())
}

// checkOffer says why an OFFER is not to be REQUESTed: what checkMsg
// refuses, and an offer without a usable server identifier (RFC 2131
// 4.3.1 requires one; the REQUEST must name it, and the answer is
// matched by it).
func (c *DHCPClient) checkOffer(m *dhcpv4.DHCPv4) error {
	if _, ok := serverOf(m); !ok {
		return fmt.Errorf("no usable server identifier (%v)", m.ServerIdentifier())
	}
	return c.checkMsg(m)
}

// serverOf is the server identifier of m, if it is a host's address.
func serverOf(m *dhcpv4.DHCPv4) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(m.ServerIdentifier().To4())
	if !ok || checkAddr(a) != nil {
		return netip.Addr{}, false
	}
	return a, true
}

// refuse records a lease that check refused; nothing of it is applied.
// then says what the client does about it.
func (c *DHCPClient) refuse(nl *nclient4.Lease, state DHCPState, err error, then string) {
	ip := nl.ACK.YourIPAddr.String()
	detail := fmt.Sprintf("refused %s from server %s in %s: %v; nothing applied%s", ip, nl.ACK.ServerIdentifier(), state, err, then)
	c.Logf("netconf: dhcp on %s: %s", c.Link, detail)
	c.update(func(s *DHCPStatus) {
		s.Refusals++
		s.LastError = detail
	})
	c.Events.Add(Event{Kind: EventRefused, Link: c.Link, IP: ip, Detail: detail})
}

// refuseACK handles an ACK that check refused when the client asked for
// a new binding (SELECTING's REQUEST, INIT-REBOOT): the server has
// committed the address to this client (RFC 2131 4.3.2) and the uplink
// will not use it.
//
// The client sends DHCPRELEASE, not DHCPDECLINE. DECLINE means "this
// address is already in use on the network" (RFC 2131 3.1 step 5,
// 4.4.1: found by ARP), and the server must then mark the address as
// not available to anyone (4.3.3) and tell its administrator of a
// conflict. None of that is true here: the address is free, it is this
// gate's policy (a protected range, a bad mask) that will not carry the
// lease. A DECLINE would lie to the server, take a good address away
// from other clients for the server's quarantine time, and with a server
// whose every lease is refused drain its pool address by address.
// RELEASE hands the binding back for reuse, which is what not using it
// means. It is sent as from the leased address (ciaddr and source,
// 4.4.6) to the server identifier, through the raw socket (the address
// is never configured) in an Ethernet broadcast frame (that socket does
// not resolve the server's MAC address).
//
// The server is then passed over for AvoidFor: its acceptable offers are
// taken only when no other server offers within SelectWindow, so a
// second server gets its chance, and a network with only this server is
// not left without DHCP. The caller restarts discovery with its back-off.
func (c *DHCPClient) refuseACK(nl *nclient4.Lease, state DHCPState, err error) {
	then := "; " + c.releaseRefused(nl.ACK)
	if s, ok := serverOf(nl.ACK); ok {
		now := time.Now()
		if c.avoid == nil {
			c.avoid = make(map[netip.Addr]time.Time)
		}
		for k, until := range c.avoid {
			if !now.Before(until) {
				delete(c.avoid, k)
			}
		}
		c.avoid[s] = now.Add(c.AvoidFor)
		then += fmt.Sprintf("; its offers are passed over for %s while another server offers", c.AvoidFor)
	}
	c.refuse(nl, state, err, then)
}

// releaseRefused sends DHCPRELEASE for a refused ACK's binding and says
// what it did (refuseACK).
func (c *DHCPClient) releaseRefused(ack *dhcpv4.DHCPv4) string {
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	srv, sok := serverOf(ack)
	switch {
	case !ok || checkAddr(ip) != nil:
		return "no address to release"
	case !sok:
		return "not released (no server identifier)"
	}
	req, err := dhcpv4.NewReleaseFromACK(ack, dhcpv4.WithHwAddr(c.hw))
	if err == nil {
		err = inNetNS(c.NS, func() error {
			pc, err := nclient4.NewRawUDPConn(c.Link, nclient4.ClientPort)
			if err != nil {
				return err
			}
			raw, ok := pc.(*nclient4.BroadcastRawUDPConn)
			if !ok {
				pc.Close()
				return fmt.Errorf("raw socket of type %T", pc)
			}
			conn := nclient4.NewBroadcastUDPConn(raw.PacketConn, &net.UDPAddr{IP: ipOf(ip), Port: nclient4.ClientPort})
			defer conn.Close()
			_, err = conn.WriteTo(req.ToBytes(), &net.UDPAddr{IP: ipOf(srv), Port: nclient4.ServerPort})
			return err
		})
	}
	if err != nil {
		c.fail(fmt.Errorf("release refused %s to %s: %w", ip, srv, err))
		return fmt.Sprintf("release to %s failed: %v", srv, err)
	}
	return fmt.Sprintf("released to %s (not declined: the address is not in use, this gate will not carry it)", srv)
}

// avoided says whether server s is passed over (refuseACK).
func (c *DHCPClient) avoided(s netip.Addr) bool {
	until, ok := c.avoid[s]
	if ok && !time.Now().Before(until) {
		delete(c.avoid, s)
		return false
	}
	return ok
}

// refuseOffer records an offer that checkOffer refused. Every one counts
// in the status; an event (and log line) is made at most once per
// refusedOfferEvery for each server, saying how many were refused
// without one since (offerLimiter), so a rogue server, or a flood of
// forged offers, cannot flood the events ring or the log.
func (c *DHCPClient) refuseOffer(m *dhcpv4.DHCPv4, err error) {
	srv := m.ServerIdentifier()
	detail := fmt.Sprintf("refused the offer of %s from server %s: %v; not requested", m.YourIPAddr, srv, err)
	c.update(func(s *DHCPStatus) {
		s.Refusals++
		s.LastError = detail
	})
	key, _ := netip.AddrFromSlice(srv.To4())
	ok, more := c.offers.allow(key, time.Now())
	if !ok {
		return
	}
	if more > 0 {
		detail += fmt.Sprintf(" (%d more refused offers from it without an event since the last)", more)
	}
	c.Logf("netconf: dhcp on %s: %s", c.Link, detail)
	c.Events.Add(Event{Kind: EventRefused, Link: c.Link, IP: m.YourIPAddr.String(), Detail: detail})
}

// offerLimiter lets one refused-offer event through per server per
// refusedOfferEvery and counts the ones held back. It keeps at most
// offerLimiterKeys servers: beyond them (forged server identifiers)
// every other server shares one entry.
type offerLimiter struct {
	last map[netip.Addr]*offerCount
}

type offerCount struct {
	at   time.Time
	held int
}

const offerLimiterKeys = 64

// allow says whether to make an event about server key now, and how many
// were held back since the last one.
func (l *offerLimiter) allow(key netip.Addr, now time.Time) (bool, int) {
	if l.last == nil {
		l.last = make(map[netip.Addr]*offerCount)
	}
	e, ok := l.last[key]
	if !ok && len(l.last) >= offerLimiterKeys {
		for k, v := range l.last {
			if now.Sub(v.at) >= refusedOfferEvery {
				delete(l.last, k)
			}
		}
		if len(l.last) >= offerLimiterKeys {
			key = netip.Addr{} // the shared entry
			e, ok = l.last[key]
		}
	}
	if !ok {
		l.last[key] = &offerCount{at: now}
		return true, 0
	}
	if now.Sub(e.at) < refusedOfferEvery {
		e.held++
		return false, 0
	}
	held := e.held
	e.at, e.held = now, 0
	return true, held
}

// selectOffer sends one DISCOVER and chooses the offer to REQUEST among
// those that come within wait (RFC 2131 4.4.1 lets a client collect
// several and choose). Each offer is checked like the lease it
// describes (checkOffer): a refused one is passed over, with an event
// (refuseOffer), however early it came, so a rogue server that always
// answers first does not keep the uplink from a proper server's lease.
// The first acceptable offer from a server not passed over (avoided) is
// taken at once; the first from a passed-over server is kept and taken
// only when no other acceptable offer came within SelectWindow of the
// DISCOVER (or within wait, if shorter). nil: none to take.
func (c *DHCPClient) selectOffer(ctx context.Context, bc *nclient4.Client, wait time.Duration) *dhcpv4.DHCPv4 {
	discover, err := dhcpv4.NewDiscovery(c.hw, requestedOptions,
		dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(nclient4.MaxMessageSize)))
	if err != nil {
		c.fail(fmt.Errorf("discover: %w", err))
		return nil
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var fallback *dhcpv4.DHCPv4
	var window *time.Timer
	defer func() {
		if window != nil {
			window.Stop()
		}
	}()
	// The matcher runs in SendAndRead, in this goroutine, for every
	// answer to the DISCOVER's transaction id.
	match := func(m *dhcpv4.DHCPv4) bool {
		if m.MessageType() != dhcpv4.MessageTypeOffer {
			return false
		}
		if err := c.checkOffer(m); err != nil {
			c.refuseOffer(m, err)
			return false
		}
		if s, _ := serverOf(m); c.avoided(s) {
			if fallback == nil {
				fallback = m
				window = time.AfterFunc(time.Until(start.Add(c.SelectWindow)), cancel)
			}
			return false
		}
		return true
	}
	offer, err := bc.SendAndRead(wctx, nclient4.DefaultServers, discover, match)
	switch {
	case err == nil:
		if fallback != nil {
			c.Logf("netconf: dhcp on %s: offer of %s from %s taken over %s's (passed over)", c.Link, offer.YourIPAddr, offer.ServerIdentifier(), fallback.ServerIdentifier())
		}
		return offer
	case ctx.Err() != nil:
		return nil
	case fallback != nil:
		c.Logf("netconf: dhcp on %s: no other server offered within %s; taking the offer of %s from %s (passed over since its ACK was refused)",
			c.Link, min(c.SelectWindow, wait), fallback.YourIPAddr, fallback.ServerIdentifier())
		return fallback
	case !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nclient4.ErrNoResponse):
		c.fail(fmt.Errorf("discover: %w", err))
	}
	return nil
}
