// Package netconfd is the main of otgate-netconf, the netconf service: it
// configures the uplink (DHCP or static, as the applied site policy's
// uplink section says when the service starts; -uplink-mode overrides it
// for development) and the OT downlinks (the gate's
// address in each zone of the applied site policy, on one 802.1Q
// sub-interface per VLAN zone), watches the OT side's
// neighbours against the declared inventory, and answers `otgate netconf` on
// a unix socket (CBOR). SIGTERM releases the DHCP lease and stops; SIGHUP
// re-reads the policy at once.
package netconfd

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/internal/sandbox"
	"github.com/otgate/otgate/services/netconf"
	"github.com/otgate/otgate/site"
)

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func Main() {
	var downlinks, addresses listFlag
	uplink := flag.String("uplink", "eth0", "uplink interface (the board's uplink NIC)")
	mode := flag.String("uplink-mode", "", "development override of how the uplink is configured: dhcp, static or none (leave it alone); empty: as the applied site policy's uplink section says (dhcp without one). A warning when it disagrees with the site file")
	upAddr := flag.String("uplink-address", "", "with -uplink-mode static: uplink address, e.g. 192.168.10.5/24")
	upGW := flag.String("uplink-gateway", "", "with -uplink-mode static: uplink default gateway")
	upDNS := flag.String("uplink-dns", "", "with -uplink-mode static: uplink DNS servers, comma-separated")
	flag.Var(&downlinks, "downlink", "OT downlink NAME (the board's NIC role); repeat for each. NAME=ADDR/LEN also gives the gate an address there (development: overrides the site policy's gate_address of a zone in that subnet)")
	flag.Var(&addresses, "address", "development override: gate address on an interface, NAME=ADDR/LEN (e.g. eth1.100=10.77.1.1/24); a zone's gate_address in the site policy is the normal source; repeatable")
	policy := flag.String("policy", filepath.Join(site.DefaultStateDir, site.AppliedFile), "compiled policy (zones and assets)")
	sock := flag.String("socket", netconf.DefaultSocket, "unix socket answering otgate netconf (CBOR)")
	resolv := flag.String("resolv", netconf.DefaultResolvConf, "resolver file written from the uplink's DNS settings")
	etcResolv := flag.String("etc-resolv", "/etc/resolv.conf", "also write this resolver file when writable (empty: never)")
	hint := flag.String("dhcp-hint", "/perm/netconf/dhcp-hint.cbor", "remember the last DHCP address here to ask for it again (empty: never)")
	absent := flag.Duration("absent-after", 5*time.Minute, "a declared asset not seen for this long is reported absent")
	probe := flag.Duration("probe-interval", 30*time.Second, "ARP-probe each declared asset once per interval on its downlink (0: never)")
	readyWait := flag.Duration("ready-wait", 10*time.Second, "how long readiness waits for the first DHCP lease")
	poll := flag.Duration("poll", 2*time.Second, "how often to check the policy file for a change")
	repair := flag.Duration("repair", 30*time.Second, "how often to re-check the interfaces for drift")
	backoffMin := flag.Duration("dhcp-backoff-min", netconf.DefaultBackoffMin, "first wait between DHCP discovery attempts")
	backoffMax := flag.Duration("dhcp-backoff-max", netconf.DefaultBackoffMax, "longest wait between DHCP discovery attempts")
	retryMin := flag.Duration("dhcp-retry-min", netconf.DefaultRetryMin, "shortest wait between renewal or rebinding retransmissions")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "otgate-netconf: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	// It runs as root and reads the uplink (DHCP): it keeps only
	// CAP_NET_ADMIN (links, addresses, routes, its sysctls), CAP_NET_RAW
	// (DHCP and ARP on packet sockets) and CAP_NET_BIND_SERVICE (port 68)
	// (internal/sandbox).
	if err := sandbox.LockDown(unix.CAP_NET_ADMIN, unix.CAP_NET_RAW, unix.CAP_NET_BIND_SERVICE); err != nil {
		fmt.Fprintf(os.Stderr, "otgate-netconf: %v\n", err)
		os.Exit(1)
	}
	logger := log.New(os.Stderr, "", log.LstdFlags)

	cfg, err := config(*uplink, *mode, *upAddr, *upGW, *upDNS, downlinks, addresses)
	if err != nil {
		fmt.Fprintf(os.Stderr, "otgate-netconf: %v\n", err)
		os.Exit(2)
	}
	cfg.PolicyPath, cfg.SocketPath, cfg.HintPath = *policy, *sock, *hint
	cfg.Resolver = &netconf.Resolver{Path: *resolv, Etc: *etcResolv, Logf: logger.Printf}
	cfg.AbsentAfter, cfg.ProbeInterval, cfg.ReadyWait = *absent, *probe, *readyWait
	cfg.Poll, cfg.Repair = *poll, *repair
	cfg.BackoffMin, cfg.BackoffMax, cfg.RetryMin = *backoffMin, *backoffMax, *retryMin

	// Then it confines its file access (Landlock) to the files it uses:
	// its socket, resolver files, DHCP hint and promote_secondaries
	// sysctls, and reading the policy (netconf.Confinement says which and
	// why). The log lines' time zone is loaded first (/etc/localtime,
	// read on first use, is not among them).
	_, _ = time.Now().Zone()
	files, err := netconf.Confinement(&cfg, logger.Printf)
	if err == nil {
		err = sandbox.RestrictFiles(files)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "otgate-netconf: %v: refusing to run unconfined\n", err)
		os.Exit(1)
	}
	logger.Printf("netconf: files confined: %s", files)

	// Routing netlink only: a handle with no families named opens an XFRM
	// socket too, which needs the xfrm_user module for nothing.
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		logger.Fatalf("netconf: netlink: %v", err)
	}
	defer h.Close()
	svc, err := netconf.New(cfg, h, logger.Printf)
	if err != nil {
		fmt.Fprintf(os.Stderr, "otgate-netconf: %v\n", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			svc.Reload()
		}
	}()
	if err := svc.Run(ctx); err != nil {
		logger.Printf("%v", err)
		os.Exit(1)
	}
	logger.Printf("netconf: stopped (downlinks keep their configuration)")
}

func config(uplink, mode, addr, gw, dns string, downlinks, addresses []string) (netconf.Config, error) {
	cfg := netconf.Config{Addresses: netconf.Addresses{}}
	switch netconf.UplinkMode(mode) {
	case netconf.UplinkStatic:
		u, err := netconf.ParseStaticUplink(uplink, addr, gw, dns)
		if err != nil {
			return cfg, err
		}
		cfg.Uplink = u
	case "", netconf.UplinkDHCP, netconf.UplinkNone:
		if addr != "" || gw != "" || dns != "" {
			return cfg, fmt.Errorf("-uplink-address, -uplink-gateway and -uplink-dns need -uplink-mode static (got %s)", mode)
		}
		cfg.Uplink = netconf.Uplink{Name: uplink, Mode: netconf.UplinkMode(mode)}
	default:
		return cfg, fmt.Errorf("-uplink-mode %q: want dhcp, static or none", mode)
	}
	add := func(flagName, v string, needAddr bool) error {
		d, err := netconf.ParseDownlink(v)
		if err != nil {
			return fmt.Errorf("-%s: %w", flagName, err)
		}
		if d.Address.IsValid() {
			cfg.Addresses[d.Name] = append(cfg.Addresses[d.Name], d.Address)
		} else if needAddr {
			return fmt.Errorf("-%s %q: want NAME=ADDR/LEN", flagName, v)
		}
		if flagName == "downlink" {
			cfg.Downlinks = append(cfg.Downlinks, d.Name)
		}
		return nil
	}
	for _, v := range downlinks {
		if err := add("downlink", v, false); err != nil {
			return cfg, err
		}
	}
	for _, v := range addresses {
		if err := add("address", v, true); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}
