package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/otgate/otgate/internal/syncbuf"
)

// DHCPServer is dnsmasq serving the gate's uplink from the lab namespace:
// it hands out GateUplinkIP (and only that) on UplinkTap, no DNS.
type DHCPServer struct {
	cmd  *exec.Cmd
	dir  string
	log  *syncbuf.Buffer
	done chan error
}

// StartDHCP starts the uplink DHCP server. It is stopped by Stop or by
// the lab's Close.
func (l *Lab) StartDHCP(ctx context.Context) (*DHCPServer, error) {
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		return nil, fmt.Errorf("lab: DHCP server needs dnsmasq (Debian package dnsmasq): %w", err)
	}
	dir, err := os.MkdirTemp("", "otgate-lab-dhcp-")
	if err != nil {
		return nil, fmt.Errorf("lab: DHCP server directory: %w", err)
	}
	mask := "255.255.255.0"
	s := &DHCPServer{dir: dir, log: &syncbuf.Buffer{}, done: make(chan error, 1)}
	s.cmd = l.Uplink.CommandContext(ctx, bin,
		"--keep-in-foreground", "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--port=0", // no DNS
		"--interface="+UplinkTap, "--bind-interfaces", "--except-interface=lo",
		"--dhcp-range="+GateUplinkIP+","+GateUplinkIP+","+mask+",1h",
		"--dhcp-authoritative", "--log-dhcp",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"),
		"--pid-file=", // none
		"--user=root")
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("lab: start dnsmasq: %w", err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	// In the foreground dnsmasq writes no pid file: its log line about the
	// bound sockets says it is serving.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if strings.Contains(s.log.String(), "sockets bound exclusively to interface "+UplinkTap) {
			return s, nil
		}
		select {
		case err := <-s.done:
			os.RemoveAll(dir)
			return nil, fmt.Errorf("lab: dnsmasq exited at start (%v): %s", err, strings.TrimSpace(s.log.String()))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("lab: dnsmasq did not start within 20s: %s", s.log.String())
		}
	}
}

// Leases returns dnsmasq's lease file: one line per lease
// ("expiry mac ip hostname client-id").
func (s *DHCPServer) Leases() (string, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, "leases"))
	return string(b), err
}

// Stop ends dnsmasq and removes its files.
func (s *DHCPServer) Stop() {
	_ = s.cmd.Process.Kill()
	<-s.done
	s.done <- nil // later Stops return at once
	os.RemoveAll(s.dir)
}
