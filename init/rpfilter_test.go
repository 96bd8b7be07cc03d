package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/otgate/otgate/internal/bootcfg"
)

// lockedBuf is a log sink the logger may write from its goroutine.
type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// With the baseline in place, init turns strict reverse-path filtering on
// for "all" and "default"; when it cannot, it fails closed like a missing
// baseline (no service, never ready), naming the sysctl.
func TestFirewallStrictReversePath(t *testing.T) {
	saved, savedConf := installBaseline, rpFilterConf
	t.Cleanup(func() { installBaseline, rpFilterConf = saved, savedConf })
	installBaseline = func(*bootcfg.Config) error { return nil }
	cfg := &bootcfg.Config{Uplink: "eth0", Downlinks: []string{"eth1"}}

	conf := t.TempDir()
	for _, iface := range []string{"all", "default"} {
		if err := os.MkdirAll(filepath.Join(conf, iface), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(conf, iface, "rp_filter"), []byte("0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rpFilterConf = conf
	var out lockedBuf
	in := &initProc{log: newLogger(&out), cfg: cfg}
	if msg := in.setupFirewall(); msg != "" {
		t.Fatalf("setupFirewall: %q", msg)
	}
	for _, iface := range []string{"all", "default"} {
		if b, _ := os.ReadFile(filepath.Join(conf, iface, "rp_filter")); strings.TrimSpace(string(b)) != "1" {
			t.Errorf("%s rp_filter %q, want 1", iface, b)
		}
	}

	// "default" missing: the filter cannot be set.
	if err := os.RemoveAll(filepath.Join(conf, "default")); err != nil {
		t.Fatal(err)
	}
	msg := in.setupFirewall()
	if !strings.Contains(msg, "strict reverse-path filtering NOT on") || !strings.Contains(msg, filepath.Join(conf, "default", "rp_filter")) {
		t.Fatalf("setupFirewall without default: %q", msg)
	}
}

// In a real network namespace, init leaves "all" and "default" at 1 and
// says so after the baseline line, before any service's output.
func TestHostInitStrictReversePath(t *testing.T) {
	core := svc("core", bootcfg.ReadyNotify, "-mode=steady")
	core.Critical = true
	root := t.TempDir()
	writeBootConfig(t, root, &bootcfg.Config{Uplink: "eth0", Downlinks: []string{"eth1"}, Services: []bootcfg.Service{core}})
	h := runInitInPrivateNetns(t, root)
	h.wait(t, "init: ready (")
	h.wait(t, "core: testsvc: ready")
	lines := h.lines()
	rp := lineIndex(lines, "init: firewall: strict reverse-path filtering on (rp_filter 1)")
	start := lineIndex(lines, "core: testsvc: ready")
	if rp < 0 || rp > start {
		t.Fatalf("rp_filter line at %d, first service output at %d\n%s", rp, start, strings.Join(lines, "\n"))
	}
	for _, iface := range []string{"all", "default"} {
		out, err := exec.Command("nsenter", "--net=/proc/"+strconv.Itoa(h.cmd.Process.Pid)+"/ns/net", "cat", "/proc/sys/net/ipv4/conf/"+iface+"/rp_filter").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "1" {
			t.Errorf("%s rp_filter in init's namespace: %q %v, want 1", iface, out, err)
		}
	}
}
