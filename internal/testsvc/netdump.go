package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/services/segment/baseline"
)

// netdump prints the gate's network state as seen from inside: links and
// addresses, nftables tables, and what a connection to -probe does.
func netdump(wait time.Duration) error {
	waits, probes := netdumpHooks(readCmdline())
	if waitAddr != "" {
		waits = append(strings.Split(waitAddr, ","), waits...)
	}
	if probe != "" {
		probes = append([]string{probe}, probes...)
	}
	if len(waits) > 0 {
		if err := waitForAddresses(waits, wait); err != nil {
			fmt.Printf("testsvc: netdump: %v\n", err)
		}
	}
	fmt.Println("testsvc: netdump")
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("netdump: links: %w", err)
	}
	sort.Slice(links, func(i, j int) bool { return links[i].Attrs().Index < links[j].Attrs().Index })
	for _, l := range links {
		a := l.Attrs()
		state := "down"
		if a.Flags&net.FlagUp != 0 {
			state = "up"
		}
		var addrs []string
		list, err := netlink.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return fmt.Errorf("netdump: addresses of %s: %w", a.Name, err)
		}
		for _, ad := range list {
			addrs = append(addrs, ad.IPNet.String())
		}
		fmt.Printf("testsvc: link %s %s %s %s\n", a.Name, l.Type(), state, strings.Join(addrs, " "))
	}
	// IPv6 per link: the sysctl and the addresses the kernel gave it (a
	// link with IPv6 on gets a link-local fe80:: address once up).
	for _, l := range links {
		a := l.Attrs()
		v, err := readFile("/proc/sys/net/ipv6/conf/" + a.Name + "/disable_ipv6")
		if err != nil {
			v = "unreadable (" + err.Error() + ")"
		}
		list, err := netlink.AddrList(l, netlink.FAMILY_V6)
		if err != nil {
			return fmt.Errorf("netdump: IPv6 addresses of %s: %w", a.Name, err)
		}
		var addrs []string
		for _, ad := range list {
			addrs = append(addrs, ad.IPNet.String())
		}
		fmt.Printf("testsvc: ipv6 %s disable_ipv6=%s addresses [%s]\n", a.Name, strings.TrimSpace(v), strings.Join(addrs, " "))
	}
	if b, err := readForwarding(); err == nil {
		fmt.Printf("testsvc: sysctl net.ipv4.ip_forward=%s\n", b)
	}
	for _, iface := range []string{"all", "default", "eth0", "eth1"} {
		if b, err := readFile("/proc/sys/net/ipv4/conf/" + iface + "/rp_filter"); err == nil {
			fmt.Printf("testsvc: sysctl net.ipv4.conf.%s.rp_filter=%s\n", iface, strings.TrimSpace(b))
		}
	}
	for _, name := range []string{"arp_ignore", "arp_announce"} {
		if b, err := readFile("/proc/sys/net/ipv4/conf/all/" + name); err == nil {
			fmt.Printf("testsvc: sysctl net.ipv4.conf.all.%s=%s\n", name, strings.TrimSpace(b))
		}
	}
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("netdump: nftables: %w", err)
	}
	tables, err := conn.ListTables()
	if err != nil {
		return fmt.Errorf("netdump: list tables: %w", err)
	}
	for _, t := range tables {
		chains, err := conn.ListChainsOfTableFamily(t.Family)
		if err != nil {
			return fmt.Errorf("netdump: chains of %s: %w", t.Name, err)
		}
		var names []string
		for _, c := range chains {
			if c.Table.Name != t.Name {
				continue
			}
			if c.Hooknum != nil && c.Policy != nil {
				names = append(names, fmt.Sprintf("%s(%s, %s)", c.Name, hookName(*c.Hooknum), policyName(*c.Policy)))
			} else {
				names = append(names, c.Name)
			}
		}
		fmt.Printf("testsvc: nft table %s %s chains %s\n", family(t.Family), t.Name, strings.Join(names, ","))
	}
	for _, probe := range probes {
		fmt.Printf("testsvc: probe %s as root: %s\n", probe, dialAs(probe, 0, 0))
		fmt.Printf("testsvc: probe %s as the proxy (uid %d, mark %#x): %s\n", probe, baseline.ProxyUID, baseline.ProxyMark,
			dialAs(probe, baseline.ProxyUID, baseline.ProxyMark))
	}
	dumpConfinement(wait)
	fmt.Println("testsvc: netdump end")
	return nil
}

// confinedServices are the services whose confinement netdump prints:
// the proxy (uid 101, CAP_NET_RAW and a seccomp filter) and the root
// services that limit their capabilities.
var confinedServices = []string{"otgate-proxy", "otgate-netconf", "otgate-timesync", "otgate-overlay", "otgate-identity"}

// dumpConfinement prints the confinement of each process of
// confinedServices (waiting up to wait for each to run): its uid, seccomp
// mode, no_new_privs and capability sets, as /proc/PID/status says.
func dumpConfinement(wait time.Duration) {
	deadline := time.Now().Add(wait)
	for {
		found := map[string][]string{}
		pids, _ := filepath.Glob("/proc/[0-9]*/status")
		for _, p := range pids {
			st, err := readFile(p)
			if err != nil {
				continue // gone meanwhile
			}
			f := statusFields(st)
			if !slices.Contains(confinedServices, f["Name"]) {
				continue
			}
			uid := strings.Fields(f["Uid"])
			if len(uid) == 0 {
				continue
			}
			found[f["Name"]] = append(found[f["Name"]], fmt.Sprintf("testsvc: process %s uid %s: Seccomp %s, NoNewPrivs %s, CapEff %s, CapPrm %s, CapAmb %s",
				f["Name"], uid[0], f["Seccomp"], f["NoNewPrivs"], f["CapEff"], f["CapPrm"], f["CapAmb"]))
		}
		if len(found) == len(confinedServices) || time.Now().After(deadline) {
			for _, name := range confinedServices {
				if len(found[name]) == 0 {
					fmt.Printf("testsvc: no process %s\n", name)
				}
				for _, l := range found[name] {
					fmt.Println(l)
				}
			}
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// statusFields splits /proc/PID/status into its fields.
func statusFields(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

func family(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	}
	return fmt.Sprintf("family-%d", f)
}

func readForwarding() (string, error) {
	b, err := readFile("/proc/sys/net/ipv4/ip_forward")
	return strings.TrimSpace(b), err
}

// waitForAddresses waits until every named interface has an IPv4 address.
func waitForAddresses(names []string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		missing := ""
		for _, n := range names {
			l, err := netlink.LinkByName(n)
			if err != nil {
				missing = n
				break
			}
			if as, err := netlink.AddrList(l, netlink.FAMILY_V4); err != nil || len(as) == 0 {
				missing = n
				break
			}
		}
		if missing == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s has no IPv4 address after %s", missing, wait)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dialAs tries a TCP connection as uid (the socket's owner is the
// thread's fsuid) with SO_MARK mark, and says what happened. The thread
// is locked and never handed back, so the fsuid does not leak.
func dialAs(addr string, uid, mark int) string {
	res := make(chan string, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread ends with this goroutine
		if uid != 0 {
			unix.Setfsuid(uid)
		}
		d := net.Dialer{Timeout: 3 * time.Second}
		if mark != 0 {
			d.Control = func(_, _ string, rc syscall.RawConn) error {
				var serr error
				if err := rc.Control(func(fd uintptr) {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, mark)
				}); err != nil {
					return err
				}
				return serr
			}
		}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			res <- "blocked (" + err.Error() + ")"
			return
		}
		c.Close()
		res <- "connected"
	}()
	return <-res
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

func hookName(h nftables.ChainHook) string {
	switch h {
	case *nftables.ChainHookPrerouting:
		return "prerouting"
	case *nftables.ChainHookInput:
		return "input"
	case *nftables.ChainHookForward:
		return "forward"
	case *nftables.ChainHookOutput:
		return "output"
	case *nftables.ChainHookPostrouting:
		return "postrouting"
	}
	return fmt.Sprintf("hook-%d", h)
}

func policyName(p nftables.ChainPolicy) string {
	if p == nftables.ChainPolicyDrop {
		return "drop"
	}
	return "accept"
}

// Kernel command-line hooks of netdump (test images only, like the
// service): more interfaces to wait for and more ADDR:PORT to probe, each
// comma-separated, on top of -wait-addr and -probe.
const (
	hookNetdumpWait  = "otgate.test.netdump_wait"
	hookNetdumpProbe = "otgate.test.netdump_probe"
)

func netdumpHooks(cmdline string) (waits, probes []string) {
	for _, f := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(f, "=")
		switch {
		case k == hookNetdumpWait && v != "":
			waits = append(waits, strings.Split(v, ",")...)
		case k == hookNetdumpProbe && v != "":
			probes = append(probes, strings.Split(v, ",")...)
		}
	}
	return waits, probes
}

func readCmdline() string {
	b, _ := readFile("/proc/cmdline")
	return b
}
