package netconf

// What a DHCP run keeps from the one before it: the address a run that
// died left on the uplink (keepPrevious, dropKept) and the remembered
// address asked for again (initReboot).

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// keepPrevious looks at what a previous run left on the uplink: a run
// that died (a crash, a kill, init restarting it) did not release its
// lease, and the kernel still carries its address (until the lease's end:
// it was installed with the lease's lifetime) and default route. When
// that address is the remembered one and nothing else of ours is there,
// it stays while INIT-REBOOT asks the server for it again (RFC 2131 3.2:
// a client may use its lease until it ends): an ACK keeps it with the
// new lifetime, and the gate's sessions over the uplink (the proxy's)
// never lose their address. Anything else (another address, more than
// one, nothing remembered) goes, as does the kept address when the
// server refuses it or does not answer (dropKept): the client starts
// clean.
func (c *DHCPClient) keepPrevious() {
	hint := c.loadHint()
	owned, err := c.up.owned()
	if err == nil && hint.IsValid() && len(owned) == 1 && owned[0].Addr() == hint {
		c.kept = true
		c.Logf("netconf: dhcp on %s: keeping %s from the previous run while asking for it again", c.Link, owned[0])
		return
	}
	if err := c.up.clear(); err != nil {
		c.fail(err)
	}
}

// dropKept removes the kept address (and route, DNS) of the previous run
// before discovery: the server did not give it back.
func (c *DHCPClient) dropKept() {
	if !c.kept {
		return
	}
	c.kept = false
	c.Logf("netconf: dhcp on %s: the address of the previous run was not given back; removing it", c.Link)
	if err := c.up.clear(); err != nil {
		c.fail(err)
	}
}

// initReboot asks for the remembered address (RFC 2131 3.2): broadcast
// REQUEST with the requested address and no server identifier. A NAK
// forgets it; no answer falls through to discovery.
func (c *DHCPClient) initReboot(ctx context.Context, bc *nclient4.Client, hint netip.Addr) *nclient4.Lease {
	c.setState(StateInitReboot)
	req, err := dhcpv4.New(dhcpv4.WithHwAddr(c.hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ipOf(hint))),
		dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(nclient4.MaxMessageSize)), requestedOptions)
	if err != nil {
		c.fail(fmt.Errorf("init-reboot: %w", err))
		return nil
	}
	actx, cancel := context.WithTimeout(ctx, c.BackoffMin)
	defer cancel()
	resp, err := bc.SendAndRead(actx, nclient4.DefaultServers, req, nclient4.IsMessageType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak))
	if err != nil {
		c.Logf("netconf: dhcp on %s: no answer to INIT-REBOOT for %s, discovering", c.Link, hint)
		return nil
	}
	if resp.MessageType() == dhcpv4.MessageTypeNak {
		c.update(func(s *DHCPStatus) { s.NAKs++ })
		c.event(EventNAK, nil, fmt.Sprintf("server %s refused the remembered address %s: %s", resp.ServerIdentifier(), hint, resp.Message()))
		c.saveHint(netip.Addr{})
		return nil
	}
	return &nclient4.Lease{Offer: resp, ACK: resp, CreationTime: time.Now()}
}
