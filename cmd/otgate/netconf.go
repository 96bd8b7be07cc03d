//go:build linux

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/otgate/otgate/services/netconf"
)

func init() {
	register(command{name: "netconf", summary: "show the gate's interfaces, DHCP lease, OT inventory and neighbour events", run: runNetconf})
}

const netconfUsage = `usage: otgate netconf [-socket PATH] [-json] status|events [-after N]|asset NAME

  status      interfaces, uplink and DHCP lease, OT assets and undeclared devices
  events      neighbour and lease events (-after N: only those after sequence N)
  asset NAME  one asset: where it was seen, with which MAC, and whether it is suspect`

func runNetconf(args []string) error {
	fs := flag.NewFlagSet("otgate netconf", flag.ContinueOnError)
	socket := fs.String("socket", netconf.DefaultSocket, "netconf service socket")
	asJSON := fs.Bool("json", false, "print JSON instead of words")
	after := fs.Uint64("after", 0, "events: only those after this sequence number")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s\n\nflags:\n", netconfUsage)
		fs.PrintDefaults()
	}
	// Flags may come before or after the subcommand.
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("missing subcommand (status, events or asset)\n%s", netconfUsage)
	}
	req := netconf.Request{Op: pos[0]}
	afterSet := false
	fs.Visit(func(f *flag.Flag) { afterSet = afterSet || f.Name == "after" })
	switch {
	case pos[0] != netconf.OpStatus && pos[0] != netconf.OpEvents && pos[0] != netconf.OpAsset:
		return usagef("unknown subcommand %q (want status, events or asset NAME)\n%s", pos[0], netconfUsage)
	case pos[0] == netconf.OpAsset && len(pos) == 1:
		return usagef("asset: missing NAME\n%s", netconfUsage)
	case pos[0] == netconf.OpAsset && len(pos) > 2, pos[0] != netconf.OpAsset && len(pos) > 1:
		return usagef("%s: unexpected argument %q\n%s", pos[0], pos[len(pos)-1], netconfUsage)
	case afterSet && pos[0] != netconf.OpEvents:
		return usagef("-after is for events\n%s", netconfUsage)
	}
	switch pos[0] {
	case netconf.OpEvents:
		req.After = *after
	case netconf.OpAsset:
		req.Asset = pos[1]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := netconf.Query(ctx, *socket, req)
	if err != nil {
		return socketError(err, "the netconf service", *socket)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		switch req.Op {
		case netconf.OpStatus:
			return enc.Encode(resp.Status)
		case netconf.OpEvents:
			return enc.Encode(resp.Events)
		default:
			return enc.Encode(resp.Asset)
		}
	}
	switch req.Op {
	case netconf.OpStatus:
		printNetconfStatus(os.Stdout, resp.Status)
	case netconf.OpEvents:
		if len(resp.Events) == 0 {
			fmt.Println("no events")
		}
		for _, e := range resp.Events {
			fmt.Println(e)
		}
	default:
		printAsset(os.Stdout, *resp.Asset)
	}
	return nil
}

func printNetconfStatus(w io.Writer, st *netconf.Status) {
	ready := "ready"
	if !st.Ready {
		ready = "starting"
	}
	fmt.Fprintf(w, "netconf: %s, %d syncs\n", ready, st.Syncs)
	if st.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", st.Error)
	}
	u := st.Uplink
	fmt.Fprintf(w, "uplink %s (%s): %s", u.Name, u.Mode, u.State)
	if u.Address != "" {
		fmt.Fprintf(w, ", %s", u.Address)
	}
	if u.Gateway != "" {
		fmt.Fprintf(w, " via %s", u.Gateway)
	}
	fmt.Fprintln(w)
	if d := u.DHCP; d != nil {
		if l := d.Lease; l != nil {
			fmt.Fprintf(w, "  lease from %s: %s, renew at %s, rebind at %s, expires %s\n", l.Server, l.Duration,
				l.Renew().Format(time.RFC3339), l.Rebind().Format(time.RFC3339), l.Expiry().Format(time.RFC3339))
			if len(l.NTP) > 0 {
				fmt.Fprintf(w, "  lease NTP servers: %s\n", joinAddrs(l.NTP))
			}
			printNotUsed(w, l.NotUsed)
		}
		fmt.Fprintf(w, "  dhcp %s: %d leases, %d renewals, %d rebinds, %d NAKs, %d expiries\n", d.State, d.Leases, d.Renewals, d.Rebinds, d.NAKs, d.Expiries)
	}
	printNotUsed(w, u.NotUsed) // a static uplink's
	if u.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", u.Error)
	}
	for _, l := range st.Links {
		name := l.Name
		if l.VLAN != 0 {
			name = fmt.Sprintf("%s (VLAN %d on %s)", l.Name, l.VLAN, l.Parent)
		}
		addrs := "no address"
		if len(l.Addresses) > 0 {
			addrs = strings.Join(l.Addresses, ", ")
		}
		zones := ""
		if len(l.Zones) > 0 {
			zones = ", zones " + strings.Join(l.Zones, ", ")
		}
		fmt.Fprintf(w, "downlink %s: %s%s\n", name, addrs, zones)
	}
	for _, x := range st.Warnings {
		fmt.Fprintf(w, "warning: %s\n", x)
	}
	for _, f := range st.Foreign {
		fmt.Fprintf(w, "left alone: %s\n", f)
	}
	if len(st.Assets) > 0 {
		fmt.Fprintln(w, "assets:")
	}
	for _, a := range st.Assets {
		printAsset(w, a)
	}
	if len(st.Unknown) > 0 {
		fmt.Fprintln(w, "undeclared devices:")
	}
	for _, d := range st.Unknown {
		fmt.Fprintf(w, "  %s %s on %s, first %s, last %s (%s)\n", d.IP, d.MAC, d.Link,
			d.FirstSeen.Format(time.RFC3339), d.LastSeen.Format(time.RFC3339), d.Note)
	}
}

// printNotUsed shows what of the uplink's settings (a lease's, a static
// uplink's) the gate does not use, and why, in the service's words (their
// own ": not used" dropped: the line starts with it): a DNS server on the
// OT side is left out of resolv.conf.
func printNotUsed(w io.Writer, notUsed []string) {
	for _, n := range notUsed {
		fmt.Fprintf(w, "  not used: %s\n", strings.Replace(n, ": not used", "", 1))
	}
}

func printAsset(w io.Writer, a netconf.AssetView) {
	mac := a.SeenMAC
	if mac == "" {
		mac = "no MAC seen"
	}
	fmt.Fprintf(w, "  %s (zone %s, %s on %s): %s, %s", a.Asset, a.Zone, a.IP, a.Link, a.State, mac)
	if a.DeclaredMAC != "" {
		fmt.Fprintf(w, " (declared %s)", a.DeclaredMAC)
	}
	if !a.LastSeen.IsZero() {
		fmt.Fprintf(w, ", first seen %s, last seen %s", a.FirstSeen.Format(time.RFC3339), a.LastSeen.Format(time.RFC3339))
	}
	if a.Suspect {
		fmt.Fprintf(w, ", SUSPECT: %s", a.SuspectReason)
	}
	fmt.Fprintln(w)
}

func joinAddrs(as []netip.Addr) string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return strings.Join(out, ", ")
}
