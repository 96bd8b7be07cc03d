package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/sysctl"
	"github.com/otgate/otgate/services/segment/baseline"
	"github.com/otgate/otgate/services/segment/ruleset"
)

// installBaseline installs the baseline deny ruleset for cfg in init's
// network namespace (a variable so tests can observe the call order).
var installBaseline = func(cfg *bootcfg.Config) error {
	return ruleset.InstallBaseline(baseline.FromBoot(cfg))
}

// baselineAttempts and baselineRetry: a failed install is tried again a
// few times (a module that is still settling), then init fails closed.
const (
	baselineAttempts = 3
	baselineRetry    = 500 * time.Millisecond
)

// setupFirewall installs the baseline ruleset: after the kernel modules are
// loaded, before any interface (loopback included) is brought up and
// before any service starts. It returns "" or the error that makes init
// fail closed: with no baseline in the kernel nothing filters the
// interfaces, so init then starts no service at all (no netconf to bring
// the interfaces up, no proxy to listen) and never reports ready.
func (in *initProc) setupFirewall() string {
	log := in.log
	b := baseline.FromBoot(in.cfg)
	var err error
	for i := 1; i <= baselineAttempts; i++ {
		if err = installBaseline(in.cfg); err == nil {
			log.Printf("firewall: baseline deny ruleset installed before any interface is up (uplink %s: tcp %s, dhcp; downlinks %s: proxy uid %d only; forward dropped)",
				b.Uplink, joinPorts(b.ListenPorts), strings.Join(b.Downlinks, ","), b.Proxy.UID)
			if err := strictReversePath(); err != nil {
				return in.firewallFailed(fmt.Sprintf("strict reverse-path filtering NOT on: %v", err))
			}
			log.Printf("firewall: strict reverse-path filtering on (rp_filter 1): a packet whose source is not routed back through the interface it came in on is dropped")
			if err := arpOwnAddresses(); err != nil {
				return in.firewallFailed(fmt.Sprintf("ARP hardening NOT on: %v", err))
			}
			log.Printf("firewall: ARP answered only for the asking interface's own addresses (arp_ignore 1, arp_announce 2): no side learns the gate's addresses on another")
			return ""
		}
		if errors.Is(err, ruleset.ErrInvalidSpec) {
			break // the same spec fails the same way
		}
		if i < baselineAttempts {
			log.Printf("firewall: baseline attempt %d of %d failed: %v; retrying in %s", i, baselineAttempts, err, short(baselineRetry))
			time.Sleep(baselineRetry)
		}
	}
	return in.firewallFailed(fmt.Sprintf("baseline ruleset NOT installed: %v", err))
}

// firewallFailed logs why init fails closed and returns msg.
func (in *initProc) firewallFailed(msg string) string {
	in.log.Printf("FIREWALL ERROR: %s", msg)
	in.log.Printf("FIREWALL ERROR: failing closed: no service is started and no interface is brought up; the gate is NOT operational and will not report ready")
	return msg
}

// rpFilterConf is where the reverse-path filter's and ARP's sysctls are
// (a variable for tests).
var rpFilterConf = "/proc/sys/net/ipv4/conf"

// strictReversePath turns on strict reverse-path filtering for "all" and
// "default", before any interface is up, so that every interface made
// later has it: a packet from a side its source address does not live on
// (a host on the uplink claiming an OT asset's address, a device on one
// downlink claiming an address of another) is dropped before the input
// and forward chains. The segment service keeps it so (and says when it
// is not).
func strictReversePath() error { return setConf("rp_filter", "1") }

// setConf sets the IPv4 sysctl name to v for "all" and "default" and reads
// each back.
func setConf(name, v string) error {
	for _, iface := range []string{"all", "default"} {
		p := filepath.Join(rpFilterConf, iface, name)
		if err := sysctl.Write(p, v); err != nil {
			return err
		}
		if got, err := sysctl.Read(p); err != nil || got != v {
			return fmt.Errorf("%s reads back %q (%v), want %s", p, got, err, v)
		}
	}
	return nil
}

// arpOwnAddresses makes every interface answer ARP only for the addresses
// configured on it, and ask only with one of them (arp_ignore 1,
// arp_announce 2 on "all", which the kernel takes over any interface's
// lower value; "default" too, for what reads an interface's own).
// Linux's default answers on any interface for any local address: a
// device on one downlink asking for the gate's uplink address, or another
// zone's gate address, would be told, and the gate's ARP for an asset
// could carry the source address of a packet from another side.
func arpOwnAddresses() error {
	if err := setConf("arp_ignore", "1"); err != nil {
		return err
	}
	return setConf("arp_announce", "2")
}

func joinPorts(ps []uint16) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ",")
}
