// Package netconf is the network configuration service of the gate: it
// configures the interfaces named by the board's NIC roles, runs the
// uplink's DHCP client, and watches the OT side's neighbours against the
// declared inventory.
//
//   - The uplink: DHCP or static as the applied site policy's uplink
//     section says (DHCP without one), read when the service starts;
//     -uplink-mode (with -uplink-address, -uplink-gateway, -uplink-dns for
//     static, or none to leave the uplink alone) overrides it for
//     development, with a status warning when it disagrees with the site
//     file. A policy pushed later that changes the uplink is NOT applied
//     live: a wrong address or gateway would cut off the remote management
//     session that could put it right. It is reported instead ("uplink
//     change pending: dhcp -> static 192.168.10.5/24 via 192.168.10.1;
//     takes effect at the next restart", in the status's uplink.pending and
//     warnings, and logged once) and applied when netconf next starts (a
//     restart of the service or a reboot). At that start the default route
//     the other mode left is removed (routes are owned by protocol: static
//     or dhcp); an address a DHCP run left that the static uplink keeps
//     is made permanent (it had the lease's lifetime: the kernel would
//     remove it, and the uplink with it, at the old lease's end).
//     A static uplink's DNS servers in a protected range (a zone's
//     subnet, a downlink's, the overlay prefix: as for a lease, below)
//     are not written to resolv.conf, each said in the log and the
//     status (uplink.not_used) with the lease's words: the site file
//     refuses such an uplink.dns, but a policy compiled by an older build
//     and -uplink-dns are not checked there. When the uplink names
//     servers and none is left, resolv.conf is rewritten naming none; a
//     policy sync that changes which are left rewrites it. A static
//     uplink naming no DNS server leaves resolv.conf alone, as before.
//   - Interfaces (Plan, Reconciler): the uplink by DHCP or statically, each
//     OT downlink statically with the gate's address in each of its zones
//     (the zone's gate_address in the applied site policy, with the zone
//     subnet's length; -downlink NAME=ADDR/LEN and -address override it for
//     development), and one 802.1Q sub-interface (eth1.100) per zone that
//     names a VLAN, carrying that zone's gate address. A policy edit that
//     moves a zone's gate address swaps it (old removed, new added, logged).
//     The reconciler converges the kernel to the plan and owns only what it
//     marked: addresses carry the label "<ifname>:nc", VLAN interfaces it
//     created carry the alias "otgate-netconf". Anything else is left alone.
//     Removing an address of its own must not take anything else with
//     it: the kernel deletes the secondary addresses of a subnet (an
//     operator's too) with its primary one unless promote_secondaries is
//     on. netconf sets /proc/sys/net/ipv4/conf/<ifname>/promote_secondaries
//     to 1 on each interface it manages (the uplink, the downlinks, its
//     VLAN interfaces) before it changes addresses there, checks it at
//     every reconcile and uplink apply, and sets it again (said, as a
//     change) when found off. A secondary then becomes the subnet's
//     primary address, and with it the kernel's source address into that
//     subnet. When it cannot be set, the error names the interface and
//     the path; an address change that would lose a foreign address is
//     refused and changes no address of that interface, others go ahead.
//     The overlay interface (otg-overlay) is not netconf's: the overlay
//     service creates it and reconciles its /32 endpoints, so one owner
//     decides what is on it (services/overlay).
//   - DHCP (DHCPClient): the full RFC 2131 lease life cycle on the uplink
//     with github.com/insomniacslk/dhcp/nclient4: INIT-REBOOT with a
//     remembered address, DISCOVER/OFFER/REQUEST/ACK, renewal at T1 by
//     unicast to the server, rebinding at T2 by broadcast (any server's
//     answer extends the lease; later renewals go to that server), expiry (the
//     address and route go, discovery starts again), NAK handling, back-off,
//     and RELEASE on shutdown. The address is installed with the lease's
//     lifetime, so the kernel drops it at expiry even if the service died.
//     A run that follows one that died (init restarting it) keeps the
//     remembered address that run left, and its default route, while its
//     INIT-REBOOT asks for it again: the uplink's sessions (the proxy's)
//     do not lose their address; a refusal or no answer removes it before
//     discovery.
//     A lease the uplink must not carry is refused (event "refused",
//     nothing of it applied): an address that is not a host's unicast
//     address, a mask that is not contiguous or /0, a subnet
//     overlapping a zone's subnet, a downlink's subnet or the overlay
//     prefix (a longer prefix than a zone's would send the proxy's
//     connections to those assets out of the uplink), and a server
//     identifier in one of those (renewals and the release go there by
//     unicast, out of a downlink). The same rule as for a static uplink
//     in the site file; the zone subnets and overlay prefix are the
//     site's OT side (site.Site.OTRanges). When the policy cannot be
//     read at the service's start, the lease is checked against the
//     default overlay prefix, the flags' downlinks and the subnets of
//     the addresses netconf left on the OT side, until a sync reads it.
//     The router is taken only from the leased subnet, so it is never on
//     the OT side; the lease's broadcast address (the kernel's from the
//     mask), MTU and static routes are not used. Every OFFER is checked before
//     it is requested: a refused one is passed over for another server's
//     (one event per server a minute, every refusal counted), so a rogue
//     server answering first does not keep the uplink from a proper
//     server's lease. An ACK refused after a REQUEST or an INIT-REBOOT is
//     RELEASEd (not DECLINEd: the address is not in use, see refuseACK),
//     and its server's offers are passed over for five minutes while
//     another server offers within three seconds of the DISCOVER. A
//     refused renewal keeps the lease held; a held lease is checked again
//     at every policy sync (Recheck) and dropped when refused. A
//     lease's domain names (search list, domain name) that are not DNS
//     names are not written to resolv.conf, and said. Its DNS servers
//     (option 6) in a protected range (a zone's subnet, a downlink's, the
//     overlay prefix), or not a host's address, are not written there
//     either, each said in the log and in the status (lease.not_used),
//     the others used; when none is left resolv.conf names none (a lease
//     always rewrites it). A policy sync that changes which are left
//     rewrites it while the lease is held (as the site file refuses such
//     an uplink.dns).
//   - Neighbour watch (Watcher): netlink neighbour updates and the ARP
//     packets seen on the downlinks are compared with the declared assets
//     (IP and MAC): unknown devices, declared assets that stay absent, and
//     MAC changes (possible spoofing) become events; each declared asset is
//     probed by ARP at a low rate, only on its own downlink.
//
// Status, the inventory and the events ring are served on a unix socket
// in deterministic CBOR (Query, DefaultSocket).
//
// The service parses DHCP from the uplink, so otgate-netconf confines
// its file access with Landlock before it starts (Confinement,
// sandbox.RestrictFiles; it refuses to run unconfined): it may read the
// policy's directory and write only its socket's and resolver file's
// directory (/run/otgate/netconf, its own), its
// DHCP hint's directory, /proc/sys/net/ipv4/conf (promote_secondaries)
// and the one file /etc/resolv.conf, which it then rewrites in place
// (Resolver.EtcInPlace). No other file, device or program.
package netconf
