package main

import (
	"os"
	"path/filepath"
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
// for "all" and "default", and ARP to each interface's own addresses;
// when it cannot, it fails closed like a missing baseline (no service,
// never ready), naming the sysctl.
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
		for _, name := range []string{"rp_filter", "arp_ignore", "arp_announce"} {
			if err := os.WriteFile(filepath.Join(conf, iface, name), []byte("0\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	rpFilterConf = conf
	var out lockedBuf
	in := &initProc{log: newLogger(&out), cfg: cfg}
	if msg := in.setupFirewall(); msg != "" {
		t.Fatalf("setupFirewall: %q", msg)
	}
	for _, iface := range []string{"all", "default"} {
		for name, want := range map[string]string{"rp_filter": "1", "arp_ignore": "1", "arp_announce": "2"} {
			if b, _ := os.ReadFile(filepath.Join(conf, iface, name)); strings.TrimSpace(string(b)) != want {
				t.Errorf("%s %s %q, want %s", iface, name, b, want)
			}
		}
	}
	if !strings.Contains(out.String(), "firewall: ARP answered only for the asking interface's own addresses (arp_ignore 1, arp_announce 2)") {
		t.Errorf("init's log does not say ARP is hardened:\n%s", out.String())
	}

	// arp_announce missing: ARP cannot be hardened, init fails closed.
	if err := os.Remove(filepath.Join(conf, "all", "arp_announce")); err != nil {
		t.Fatal(err)
	}
	if msg := in.setupFirewall(); !strings.Contains(msg, "ARP hardening NOT on") || !strings.Contains(msg, filepath.Join(conf, "all", "arp_announce")) {
		t.Fatalf("setupFirewall without arp_announce: %q", msg)
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
