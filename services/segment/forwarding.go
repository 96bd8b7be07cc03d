package segment

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/otgate/otgate/internal/sysctl"
)

// ForwardingSysctl is the IPv4 forwarding switch of the network namespace
// the process runs in.
const ForwardingSysctl = "/proc/sys/net/ipv4/ip_forward"

// Forwarding is a network namespace's IPv4 forwarding switch and its
// reverse-path filter. The segment service owns both: exceptions and
// monitor zones are routed flows, and the kernel drops routed packets
// before the forward chain while the switch is off; the filter is kept
// strict whether the gate routes or not.
type Forwarding interface {
	Get() (bool, error)
	// Set turns forwarding on or off. On puts what forwarding relies on
	// in place first (strict reverse-path filtering) and fails, leaving
	// the switch as it was, when it cannot.
	Set(on bool) error
	// Strict puts strict reverse-path filtering in place, as Set(true)
	// does before it turns forwarding on.
	Strict() error
	// Drift names, in words, each thing strict reverse-path filtering
	// relies on that is not as Strict leaves it; none when all are. The
	// service asks on every check.
	Drift() []string
}

// SysctlForwarding is the switch at Path ("" = ForwardingSysctl), in the
// network namespace of the thread that opens it.
type SysctlForwarding struct{ Path string }

func (f SysctlForwarding) path() string {
	if f.Path == "" {
		return ForwardingSysctl
	}
	return f.Path
}

func (f SysctlForwarding) conf() string { return filepath.Join(filepath.Dir(f.path()), "conf") }

// Get reads the switch.
func (f SysctlForwarding) Get() (bool, error) {
	v, err := sysctl.Read(f.path())
	if err != nil {
		return false, err
	}
	switch v {
	case "0":
		return false, nil
	case "1":
		return true, nil
	default:
		return false, fmt.Errorf("%s: unexpected value %q", f.path(), v)
	}
}

// Set writes the switch. Before it turns forwarding on, it turns on
// strict reverse-path filtering (rp_filter=1, for "all" and "default",
// beside the switch: /proc/sys/net/ipv4/conf): a routed packet is
// dropped unless the route back to its source leaves through the
// interface it came in on. The forward chain's exceptions and monitor
// zones match source addresses, and nothing else ties an address to the
// side it lives on: without it, a host on the uplink that gives itself an
// OT asset's address would have its packets forwarded to the OT side
// under that asset's exception. The kernel filters an interface by the
// larger of its own value and "all"'s, so an interface set to 2 (loose:
// any route back will do) is set to 1 as well. If any of that cannot be
// set, forwarding is left as it was (off, when the service turns it on;
// the service turns it off when this fails while it is on: fail closed).
// Turning forwarding off leaves the filter on.
func (f SysctlForwarding) Set(on bool) error {
	v := "0"
	if on {
		v = "1"
		if err := f.Strict(); err != nil {
			return fmt.Errorf("strict reverse-path filtering, needed before forwarding: %w", err)
		}
	}
	return sysctl.Write(f.path(), v)
}

// Strict turns on strict reverse-path filtering: "all" and "default" at
// 1, and every interface at 2 (loose) to 1. The gate keeps it on whether
// it routes or not: it also drops, before the input chain, a packet from
// a side the source address does not live on (a host on the uplink
// claiming an OT asset's address, toward the proxy's listener, would get
// the answer sent to the asset; a device on one downlink claiming an
// address of another would be taken as it).
func (f SysctlForwarding) Strict() error {
	for _, iface := range []string{"all", "default"} {
		if err := sysctl.Write(filepath.Join(f.conf(), iface, "rp_filter"), "1"); err != nil {
			return err
		}
	}
	loose, err := f.looseInterfaces()
	if err != nil {
		return err
	}
	for _, iface := range loose {
		if err := sysctl.Write(filepath.Join(f.conf(), iface, "rp_filter"), "1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err // (an interface removed meanwhile filters nothing)
		}
	}
	return nil
}

// Drift names what Set(true) put in place and is not so now: "all" or
// "default" rp_filter not 1, an interface's rp_filter 2 (loose), or a
// value that cannot be read.
func (f SysctlForwarding) Drift() []string {
	var out []string
	for _, iface := range []string{"all", "default"} {
		v, err := sysctl.Read(filepath.Join(f.conf(), iface, "rp_filter"))
		switch {
		case err != nil:
			out = append(out, fmt.Sprintf("%s: cannot read: %v", rpFilterName(iface), err))
		case v != "1":
			out = append(out, fmt.Sprintf("%s is %s, want 1 (strict reverse-path filtering)", rpFilterName(iface), v))
		}
	}
	loose, err := f.looseInterfaces()
	if err != nil {
		out = append(out, fmt.Sprintf("the interfaces' rp_filter: %v", err))
	}
	for _, iface := range loose {
		out = append(out, fmt.Sprintf("%s is 2 (loose), which overrides the strict \"all\"; want 0 or 1", rpFilterName(iface)))
	}
	return out
}

// looseInterfaces lists the interfaces whose own rp_filter is 2 (loose).
// An interface removed while they are read is none of them.
func (f SysctlForwarding) looseInterfaces() ([]string, error) {
	ents, err := os.ReadDir(f.conf())
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if n := e.Name(); n != "all" && n != "default" {
			v, err := sysctl.Read(filepath.Join(f.conf(), n, "rp_filter"))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("%s: cannot read: %w", rpFilterName(n), err)
			}
			if v == "2" {
				out = append(out, n)
			}
		}
	}
	return out, nil
}

// rpFilterName is the sysctl's name (a dot in an interface name is a
// slash there: net.ipv4.conf.eth1/20.rp_filter).
func rpFilterName(iface string) string {
	return "net.ipv4.conf." + strings.ReplaceAll(iface, ".", "/") + ".rp_filter"
}

// WithForwarding sets the IPv4 forwarding switch the service owns
// (default: SysctlForwarding of the process's own namespace).
func WithForwarding(f Forwarding) Option { return func(s *Service) { s.fwd = f } }

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// syncForwardingLocked sets IPv4 forwarding to what the applied spec needs
// at now: on exactly when it routes (an active exception, a monitor zone
// with assets), off otherwise. It is called only after the ruleset that
// guards the forward path (forward base chain, policy drop) is in the
// kernel, so forwarding is never on without it. A change is logged; the
// first evaluation is logged too. A failure is kept in s.fwdErr (the
// service reports itself degraded) and returned; a failed "on" leaves
// forwarding off, which only stops the routed flows (fail closed).
func (s *Service) syncForwardingLocked(now time.Time) error {
	exc, zones := s.spec.Routing(now)
	want := exc > 0 || zones > 0
	cur, gerr := s.fwd.Get()
	if gerr == nil && cur == want {
		if !s.fwdLogged {
			s.fwdLogged = true
			s.logf("segment: IPv4 forwarding %s: %d exceptions, %d monitor zones", onOff(want), exc, zones)
		}
		if drift := s.fwd.Drift(); len(drift) > 0 {
			if want {
				return s.repairForwardingLocked(drift)
			}
			return s.repairFilterLocked(drift)
		}
		s.rpSet = true
		if s.fwdErr != nil {
			s.addEvent("forwarding", fmt.Sprintf("IPv4 forwarding %s and strict reverse-path filtering as they should be again", onOff(want)))
		}
		s.fwdErr = nil
		return nil
	}
	if err := s.fwd.Set(want); err != nil {
		now := "unknown"
		if gerr == nil {
			now = onOff(cur)
		}
		err = fmt.Errorf("set IPv4 forwarding %s (%d exceptions, %d monitor zones): %w; it is %s", onOff(want), exc, zones, err, now)
		if s.fwdErr == nil || s.fwdErr.Error() != err.Error() { // once, not every check
			s.event("error", "%v", err)
		}
		s.fwdErr = err
		return err
	}
	s.fwdErr = nil
	s.fwdLogged = true
	msg := fmt.Sprintf("IPv4 forwarding %s: %d exceptions, %d monitor zones", onOff(want), exc, zones)
	s.logf("segment: %s", msg)
	s.addEvent("forwarding", msg)
	if !want { // Set(false) leaves the filter as it was
		if drift := s.fwd.Drift(); len(drift) > 0 {
			return s.repairFilterLocked(drift)
		}
	}
	s.rpSet = true
	return nil
}

// repairFilterLocked is called while forwarding is off, as the spec
// wants, and strict reverse-path filtering is not in place (drift, in
// words). The first time (the service's start, on a kernel that booted
// without it: init turns it on at boot) it is put in place and said so;
// after that it is drift, logged as such and set back. If that fails the
// service is degraded with the reason until a check can set it.
func (s *Service) repairFilterLocked(drift []string) error {
	first := !s.rpSet
	if !first {
		s.drifts++
		for _, d := range drift {
			s.event("drift", "%s", d)
		}
	}
	err := s.fwd.Strict()
	if err == nil {
		if still := s.fwd.Drift(); len(still) > 0 {
			err = fmt.Errorf("still %s", strings.Join(still, "; "))
		}
	}
	if err == nil {
		s.rpSet = true
		s.fwdErr = nil
		if first {
			s.logf("segment: strict reverse-path filtering turned on (it was not: %s)", strings.Join(drift, "; "))
			return nil
		}
		msg := "strict reverse-path filtering set back"
		s.logf("segment: forwarding: %s", msg)
		s.addEvent("forwarding", msg)
		return nil
	}
	err = fmt.Errorf("strict reverse-path filtering is not in place (%s) and could not be set: %w", strings.Join(drift, "; "), err)
	if s.fwdErr == nil || s.fwdErr.Error() != err.Error() { // once, not every check
		s.event("error", "%v", err)
	}
	s.fwdErr = err
	return err
}

// repairForwardingLocked is called while forwarding is on, as the spec
// wants, and what it relies on has drifted (drift, in words: strict
// reverse-path filtering turned off by someone else). Each is logged as
// drift and put back (Set(true)); if that fails, or leaves drift, the
// service turns forwarding off (fail closed: the routed flows stop) and
// is degraded with the reason until a check can turn it on again.
func (s *Service) repairForwardingLocked(drift []string) error {
	s.drifts++
	for _, d := range drift {
		s.event("drift", "%s while IPv4 forwarding is on", d)
	}
	err := s.fwd.Set(true)
	if err == nil {
		if still := s.fwd.Drift(); len(still) > 0 {
			err = fmt.Errorf("still %s", strings.Join(still, "; "))
		}
	}
	if err == nil {
		msg := "strict reverse-path filtering set back; IPv4 forwarding stays on"
		s.logf("segment: forwarding: %s", msg)
		s.addEvent("forwarding", msg)
		s.fwdErr = nil
		return nil
	}
	what := strings.Join(drift, "; ")
	if oerr := s.fwd.Set(false); oerr != nil {
		err = fmt.Errorf("IPv4 forwarding is on and could not be turned off (%v): %s, and it could not be set back: %w", oerr, what, err)
	} else {
		err = fmt.Errorf("IPv4 forwarding turned off: %s, and it could not be set back: %w", what, err)
	}
	if s.fwdErr == nil || s.fwdErr.Error() != err.Error() { // once, not every check
		s.event("error", "%v", err)
	}
	s.fwdErr = err
	return err
}

// forwardingOffLocked turns forwarding off (if on) while the ruleset is
// not as applied: a failed repair then leaves nothing routed.
func (s *Service) forwardingOffLocked(why string) {
	if on, err := s.fwd.Get(); err == nil && !on {
		return
	}
	if err := s.fwd.Set(false); err != nil {
		s.event("error", "IPv4 forwarding off (%s): %v", why, err)
		return
	}
	msg := fmt.Sprintf("IPv4 forwarding off: %s", why)
	s.logf("segment: %s", msg)
	s.addEvent("forwarding", msg)
}

// Degraded is the service's standing failure beyond the ruleset (the
// ruleset is in force): today only the forwarding switch. nil when none.
func (s *Service) Degraded() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fwdErr
}
