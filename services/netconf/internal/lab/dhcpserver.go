package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// DHCPServer is a real DHCP server process in a namespace.
type DHCPServer struct {
	cmd    *exec.Cmd
	dir    string
	Leases string // lease file
	Log    string // log file
}

func (s *DHCPServer) Stop(t *testing.T) {
	t.Helper()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

// Reload sends SIGHUP (dnsmasq then reads its --dhcp-optsfile again).
func (s *DHCPServer) Reload(t *testing.T) {
	t.Helper()
	if s.cmd == nil {
		t.Fatal("reload of a stopped server")
	}
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("reload: %v", err)
	}
}

func (s *DHCPServer) LogText() string {
	b, _ := os.ReadFile(s.Log)
	return string(b)
}

func (s *DHCPServer) LeaseText() string {
	b, _ := os.ReadFile(s.Leases)
	return string(b)
}

// StartDnsmasq serves 10.99.0.100-150/24 on iface in ns, router
// 10.99.0.1, DNS 10.99.0.53, with the given extra options.
func StartDnsmasq(t *testing.T, ns *NS, iface, dir string, extra ...string) *DHCPServer {
	t.Helper()
	return StartDnsmasqNet(t, ns, iface, dir, "10.99.0", extra...)
}

// StartDnsmasqNet serves net.100-150/24 on iface in ns (net is the first
// three octets, "10.99.0"), router net.1, DNS net.53, domain search
// plant.example, with the given extra options. iface must carry an
// address in net.0/24.
func StartDnsmasqNet(t *testing.T, ns *NS, iface, dir, net string, extra ...string) *DHCPServer {
	t.Helper()
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Skip("dnsmasq not installed (apt-get install dnsmasq)")
	}
	s := &DHCPServer{dir: dir, Leases: filepath.Join(dir, "dnsmasq.leases"), Log: filepath.Join(dir, "dnsmasq.log")}
	args := []string{"netns", "exec", ns.Name, bin, "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
		"--interface=" + iface, "--bind-interfaces", "--user=root", "--group=root",
		"--dhcp-range=" + net + ".100," + net + ".150,255.255.255.0,2m",
		"--dhcp-option=option:router," + net + ".1", "--dhcp-option=option:dns-server," + net + ".53",
		"--dhcp-option=option:domain-search,plant.example",
		"--dhcp-authoritative", "--no-ping", "--dhcp-leasefile=" + s.Leases, "--log-dhcp", "--log-facility=" + s.Log,
		"--pid-file=" + filepath.Join(dir, "dnsmasq.pid")}
	args = append(args, extra...)
	s.cmd = exec.Command("ip", args...)
	var stderr strings.Builder
	s.cmd.Stderr = &stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start dnsmasq: %v", err)
	}
	t.Cleanup(func() { s.Stop(t) })
	WaitFor(t, 10*time.Second, "dnsmasq to start", func() bool {
		return strings.Contains(s.LogText(), "DHCP, IP range") || stderr.Len() > 0
	})
	if stderr.Len() > 0 && !strings.Contains(s.LogText(), "DHCP, IP range") {
		t.Fatalf("dnsmasq: %s", stderr.String())
	}
	return s
}

// StartKea serves 10.99.0.100-150/24 on iface in ns with a lease of
// valid seconds, renew at t1 and rebind at t2 (kea allows short ones);
// each of options is one more JSON object of the subnet's option-data
// (`{"name": "dhcp-server-identifier", "data": "10.77.0.9"}`).
func StartKea(t *testing.T, ns *NS, iface, dir string, valid, t1, t2 int, options ...string) *DHCPServer {
	t.Helper()
	bin, err := exec.LookPath("kea-dhcp4")
	if err != nil {
		t.Skip("kea-dhcp4 not installed (apt-get install kea-dhcp4-server)")
	}
	s := &DHCPServer{dir: dir, Leases: filepath.Join(dir, "kea-leases4.csv"), Log: filepath.Join(dir, "kea.log")}
	conf := fmt.Sprintf(`{"Dhcp4": {
  "interfaces-config": {"interfaces": [%q], "service-sockets-max-retries": 100, "service-sockets-retry-wait-time": 200},
  "lease-database": {"type": "memfile", "persist": true, "name": %q, "lfc-interval": 0},
  "valid-lifetime": %d, "renew-timer": %d, "rebind-timer": %d,
  "authoritative": true,
  "subnet4": [{"subnet": "10.99.0.0/24", "pools": [{"pool": "10.99.0.100 - 10.99.0.150"}],
    "option-data": [{"name": "routers", "data": "10.99.0.1"}, {"name": "domain-name-servers", "data": "10.99.0.53"}%s]}],
  "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": %q}], "severity": "DEBUG", "debuglevel": 40}]
}}`, iface, s.Leases, valid, t1, t2, extraOptions(options), s.Log)
	cf := filepath.Join(dir, "kea.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command("ip", "netns", "exec", ns.Name, bin, "-c", cf)
	s.cmd.Env = append(os.Environ(), "KEA_LOCKFILE_DIR="+dir, "KEA_PIDFILE_DIR="+dir)
	var out strings.Builder
	s.cmd.Stdout, s.cmd.Stderr = &out, &out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start kea: %v", err)
	}
	t.Cleanup(func() { s.Stop(t) })
	WaitFor(t, 15*time.Second, "kea to start", func() bool {
		return strings.Contains(s.LogText(), "DHCP4_STARTED") || s.cmd.ProcessState != nil
	})
	return s
}

// extraOptions renders StartKea's options after the fixed ones.
func extraOptions(options []string) string {
	var b strings.Builder
	for _, o := range options {
		b.WriteString(", " + o)
	}
	return b.String()
}
