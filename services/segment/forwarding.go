package segment

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ForwardingSysctl is the IPv4 forwarding switch of the network namespace
// the process runs in.
const ForwardingSysctl = "/proc/sys/net/ipv4/ip_forward"

// Forwarding is a network namespace's IPv4 forwarding switch. The segment
// service owns it: exceptions and monitor zones are routed flows, and the
// kernel drops routed packets before the forward chain while it is off.
type Forwarding interface {
	Get() (bool, error)
	Set(on bool) error
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

// Get reads the switch.
func (f SysctlForwarding) Get() (bool, error) {
	b, err := os.ReadFile(f.path())
	if err != nil {
		return false, err
	}
	switch v := strings.TrimSpace(string(b)); v {
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
// under that asset's exception. If that cannot be set, forwarding stays
// off (fail closed). Turning forwarding off leaves the filter on.
func (f SysctlForwarding) Set(on bool) error {
	v := "0"
	if on {
		v = "1"
		conf := filepath.Join(filepath.Dir(f.path()), "conf")
		for _, iface := range []string{"all", "default"} {
			if err := writeSysctl(filepath.Join(conf, iface, "rp_filter"), "1"); err != nil {
				return fmt.Errorf("strict reverse-path filtering, needed before forwarding: %w", err)
			}
		}
	}
	return writeSysctl(f.path(), v)
}

func writeSysctl(path, v string) error {
	// O_WRONLY without O_CREATE: a missing sysctl is an error, never a
	// new regular file.
	fh, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := fh.WriteString(v); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
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
		if s.fwdErr != nil {
			s.addEvent("forwarding", fmt.Sprintf("IPv4 forwarding %s as it should be again", onOff(want)))
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
	return nil
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
