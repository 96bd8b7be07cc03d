package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
)

// writeBootConfig writes cfg as root's boot config.
func writeBootConfig(t *testing.T, root string, cfg *bootcfg.Config) {
	t.Helper()
	b, err := bootcfg.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "etc/otgate"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, bootcfg.Path), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// runInitInPrivateNetns runs init with -firewall in a fresh network
// namespace (unshare --net execs init itself there), so the baseline goes
// into a namespace of its own and never into the host's.
func runInitInPrivateNetns(t *testing.T, root string) *hostInit {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespace, nftables)")
	}
	for _, bin := range []string{"unshare", "nsenter", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (util-linux, nftables)", bin)
		}
	}
	return runHostInitCmd(t, root, exec.Command("unshare", "--net", "--", initBin, "-root", root, "-firewall", "-cmdline", ""))
}

// nftList lists the gate's table in init's namespace.
func nftList(t *testing.T, pid int) (string, error) {
	t.Helper()
	out, err := exec.Command("nsenter", "--net=/proc/"+strconv.Itoa(pid)+"/ns/net", "nft", "list", "table", "inet", "otgate").CombinedOutput()
	return string(out), err
}

// The baseline is in the kernel before the first service starts, with the
// board's interfaces, the proxy's listener and the drop policies.
func TestHostInitInstallsBaselineBeforeServices(t *testing.T) {
	core := svc("core", bootcfg.ReadyNotify, "-mode=steady")
	core.Critical = true
	root := t.TempDir()
	writeBootConfig(t, root, &bootcfg.Config{Uplink: "eth0", Downlinks: []string{"eth1"}, Services: []bootcfg.Service{core}})
	h := runInitInPrivateNetns(t, root)
	h.wait(t, "init: ready (")
	// The service's own output travels through another pipe than its
	// readiness: wait for it too before comparing positions.
	h.wait(t, "core: testsvc: ready")
	lines := h.lines()
	fw := lineIndex(lines, "init: firewall: baseline deny ruleset installed before any interface is up")
	start := lineIndex(lines, "core: testsvc: ready")
	if fw < 0 || start < 0 || fw > start {
		t.Fatalf("firewall line at %d, first service output at %d: want the baseline first\n%s", fw, start, strings.Join(lines, "\n"))
	}
	// Strict reverse-path filtering too, before any service's output,
	// "all" and "default" at 1 in init's namespace.
	if rp := lineIndex(lines, "init: firewall: strict reverse-path filtering on (rp_filter 1)"); rp < 0 || rp > start {
		t.Fatalf("rp_filter line at %d, first service output at %d\n%s", rp, start, strings.Join(lines, "\n"))
	}
	for _, iface := range []string{"all", "default"} {
		out, err := exec.Command("nsenter", "--net=/proc/"+strconv.Itoa(h.cmd.Process.Pid)+"/ns/net", "cat", "/proc/sys/net/ipv4/conf/"+iface+"/rp_filter").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "1" {
			t.Errorf("%s rp_filter in init's namespace: %q %v, want 1", iface, out, err)
		}
	}
	out, err := nftList(t, h.cmd.Process.Pid)
	if err != nil {
		t.Fatalf("nft list: %v\n%s", err, out)
	}
	for _, want := range []string{
		"hook input priority filter; policy drop;",
		"hook forward priority filter; policy drop;",
		`iifname "eth0" tcp dport @listen_ports`,
		"elements = { 802, 8443 }",
		"hook output priority filter; policy drop;",
		`oifname "lo" accept`,
		`oifname "eth0" accept`,
		"jump to_ot",
		"meta skuid 101 meta mark 0x00006f74 ip daddr . tcp dport @asset_ports accept",
		"type ipv4_addr : verdict", // the zone modes' verdict maps, empty until assets are declared
		"ip daddr vmap @asset_verdicts",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, out)
		}
	}
	// PID 1 memory with nftables linked in: a figure, not a threshold.
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(h.cmd.Process.Pid) + "/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				t.Logf("init after installing the baseline: %s", strings.Join(strings.Fields(l), " "))
			}
		}
	}
}

// A baseline that cannot be installed makes init fail closed: no service
// starts, init never reports ready, and status says why.
func TestHostInitFailsClosedWithoutBaseline(t *testing.T) {
	core := svc("core", bootcfg.ReadyNotify, "-mode=steady")
	core.Critical = true
	root := t.TempDir()
	// An interface name the ruleset refuses: the install fails for real.
	writeBootConfig(t, root, &bootcfg.Config{Uplink: "bad name!", Downlinks: []string{"eth1"}, Services: []bootcfg.Service{core}})
	h := runInitInPrivateNetns(t, root)
	h.wait(t, "init: FIREWALL ERROR: failing closed: no service is started")
	c := h.dial(t)
	st, err := c.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.FirewallError, `uplink: bad interface name "bad name!"`) || st.Ready || len(st.Services) != 0 {
		t.Fatalf("status: firewall error %q, ready %v, services %+v", st.FirewallError, st.Ready, st.Services)
	}
	if out, err := nftList(t, h.cmd.Process.Pid); err == nil {
		t.Fatalf("a table is installed after the failure:\n%s", out)
	}
	time.Sleep(time.Second) // give a wrongly started service time to speak
	for _, l := range h.lines() {
		if strings.HasPrefix(l, "core: ") || strings.HasPrefix(l, "init: ready") {
			t.Fatalf("line %q after a failed baseline", l)
		}
	}
}
