package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
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
	msg := fmt.Sprintf("baseline ruleset NOT installed: %v", err)
	log.Printf("FIREWALL ERROR: %s", msg)
	log.Printf("FIREWALL ERROR: failing closed: no service is started and no interface is brought up; the gate is NOT operational and will not report ready")
	return msg
}

func joinPorts(ps []uint16) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ",")
}
