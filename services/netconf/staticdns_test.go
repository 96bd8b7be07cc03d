package netconf

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/otgate/otgate/site"
)

// storeOldPolicy stores yaml compiled with the static uplink's dns
// replaced by dns after parsing: a policy compiled by a build from
// before the site file refused an uplink.dns on the OT side, which the
// gate still loads.
func storeOldPolicy(t *testing.T, dir, yaml string, dns ...string) {
	t.Helper()
	src := []byte("site: svc\n" + yaml)
	s, err := site.Parse("site.yaml", src, site.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Uplink.DNS = nil
	for _, d := range dns {
		s.Uplink.DNS = append(s.Uplink.DNS, netip.MustParseAddr(d))
	}
	doc, err := site.Compile(s, "site.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	if err := site.Store(dir, doc); err != nil {
		t.Fatal(err)
	}
}

// nameservers are the nameserver lines of the resolv.conf at path; it
// must have been written by netconf for source.
func nameservers(t *testing.T, path, source string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "# written by otgate-netconf ("+source+")\n") {
		t.Fatalf("%s not written by netconf for %s:\n%s", path, source, b)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if s, ok := strings.CutPrefix(l, "nameserver "); ok {
			out = append(out, s)
		}
	}
	return out
}

// A static uplink's DNS server on the OT side (a zone's subnet, the
// overlay prefix) is not written to resolv.conf, with the lease path's
// words in the log and the status; the others are: here from a policy
// compiled before the site file refused them.
func TestServiceStaticUplinkDNSOnTheOTSideNotUsed(t *testing.T) {
	l := newDHCPLab(t)
	pdir := filepath.Join(l.dir, "policy")
	storeOldPolicy(t, pdir, uplinkPolicy(staticSite), "10.77.0.53", "10.99.0.53", "100.64.3.53")
	log := &syncLog{t: t}
	svc, _ := runUplinkService(t, l, pdir, Uplink{}, log)

	if ns := nameservers(t, filepath.Join(l.dir, "resolv.conf"), "static on up0"); !reflect.DeepEqual(ns, []string{"10.99.0.53"}) {
		t.Errorf("resolv.conf names %q, want only 10.99.0.53", ns)
	}
	want := []string{
		`DNS server 10.77.0.53 of the static uplink is in zone "cell-1" subnet 10.77.0.0/24: not used (the gate resolves names on the uplink side only)`,
		`DNS server 100.64.3.53 of the static uplink is in the overlay prefix 100.64.0.0/16: not used (the gate resolves names on the uplink side only)`,
	}
	for _, w := range want {
		if !log.has("netconf: static uplink up0: " + w) {
			t.Errorf("not logged: %q", w)
		}
	}
	if st := queryStatus(t, svc.SocketPath); !reflect.DeepEqual(st.Uplink.NotUsed, want) || st.Uplink.State != "configured" {
		t.Errorf("uplink status %+v: want not_used %q", st.Uplink, want)
	}
}

// With every DNS server of a static uplink on the OT side (here from
// -uplink-dns), resolv.conf is rewritten naming none: an earlier file's
// servers do not stay. A policy sync that takes a server off the OT side
// (the zone moved) makes it used again, without a restart.
func TestServiceStaticUplinkNoDNSLeftRewritesResolvConf(t *testing.T) {
	l := newDHCPLab(t)
	pdir := filepath.Join(l.dir, "policy")
	storePolicy(t, pdir, uplinkPolicy(""))
	resolv := filepath.Join(l.dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("# written by otgate-netconf (dhcp on up0 from 10.99.0.1)\nnameserver 10.77.0.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	up, err := ParseStaticUplink("up0", "10.99.0.5/24", "10.99.0.1", "10.77.0.53,100.64.0.53")
	if err != nil {
		t.Fatal(err)
	}
	log := &syncLog{t: t}
	svc, _ := runUplinkService(t, l, pdir, up, log)

	if ns := nameservers(t, resolv, "static on up0"); len(ns) != 0 {
		t.Errorf("resolv.conf names %q, want none", ns)
	}
	if !log.has("netconf: static uplink up0: no DNS server of the static uplink is left: resolv.conf names none") {
		t.Error("not logged that no DNS server is left")
	}
	if st := queryStatus(t, svc.SocketPath); len(st.Uplink.NotUsed) != 3 {
		t.Errorf("uplink status not_used %q, want both servers and that none is left", st.Uplink.NotUsed)
	}

	// The zone moves off 10.77.0.0/24: 10.77.0.53 is the uplink side's.
	storePolicy(t, pdir, "zones:\n  - {name: cell-1, owner: ot, mode: enforce, interface: eth1, subnet: 10.88.0.0/24, gate_address: 10.88.0.1}\n")
	reload(t, svc)
	if ns := nameservers(t, resolv, "static on up0"); !reflect.DeepEqual(ns, []string{"10.77.0.53"}) {
		t.Errorf("after the zone moved, resolv.conf names %q, want 10.77.0.53", ns)
	}
	if st := queryStatus(t, svc.SocketPath); len(st.Uplink.NotUsed) != 1 || !strings.Contains(st.Uplink.NotUsed[0], "100.64.0.53") {
		t.Errorf("after the zone moved, not_used %q", st.Uplink.NotUsed)
	}
}

// A static uplink that names no DNS server leaves resolv.conf alone, as
// before (static-mode behaviour unchanged).
func TestStaticUplinkWithoutDNSLeavesResolvConf(t *testing.T) {
	l := newDHCPLab(t)
	resolv := filepath.Join(l.dir, "resolv.conf")
	const mine = "nameserver 192.0.2.53\n"
	if err := os.WriteFile(resolv, []byte(mine), 0o644); err != nil {
		t.Fatal(err)
	}
	up, err := ParseStaticUplink("up0", "10.99.0.5/24", "10.99.0.1", "")
	if err != nil {
		t.Fatal(err)
	}
	s := NewStaticUplink(l.gate.Handle, l.gate.NS, up, &Resolver{Path: resolv})
	s.Protected = func() []Protected { return protectedRanges(nil, &Plan{}) }
	if _, err := s.Apply(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(resolv); string(b) != mine {
		t.Errorf("resolv.conf rewritten by a static uplink without DNS:\n%s", b)
	}
}
