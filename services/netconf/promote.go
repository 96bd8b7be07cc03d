package netconf

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/internal/sysctl"
)

// Removing an IPv4 address that is the primary one of its subnet on an
// interface makes the kernel delete every secondary address of that
// subnet with it (an operator's, added by hand, too) unless
// net.ipv4.conf.<ifname>.promote_secondaries is 1: then one secondary
// becomes the primary and the others stay. netconf turns it on for each
// interface it manages before it changes addresses there (as
// systemd-networkd does for its links); netlink has no call for it.

// procSysNet is the network namespace's sysctl tree (a variable for the
// tests of a failure).
var procSysNet = "/proc/sys/net"

func promotePath(ifname string) string {
	return filepath.Join(procSysNet, "ipv4", "conf", ifname, "promote_secondaries")
}

// promoteSecondaries makes promote_secondaries 1 on ifname in ns (zero:
// the process's own namespace): /proc/sys/net shows the namespace of the
// thread that opens it. It reports whether it had to set it (the first
// time, or a drift: someone turned it off). The error names the interface
// and the path.
func promoteSecondaries(ns netns.NsHandle, ifname string) (bool, error) {
	path := promotePath(ifname)
	set := false
	err := inNetNS(ns, func() error {
		v, err := sysctl.Read(path)
		if err != nil || v == "1" {
			return err
		}
		if err := sysctl.Write(path, "1"); err != nil {
			return err
		}
		set = true
		return nil
	})
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = fmt.Errorf("%s: %w", pe.Op, pe.Err)
		}
		return false, fmt.Errorf("netconf: %s: cannot turn on promote_secondaries (%s): %w", ifname, path, err)
	}
	return set, nil
}

// promoteChange is the Change a promoteSecondaries that set it reports.
const promoteChange = "promote_secondaries set to 1"

// guardRemovals is called when promote_secondaries could not be set
// (perr) on ifname, before netconf removes the addresses remove (its own)
// from the addresses have: when removing them would take foreign
// addresses with them (remove holds a primary address with foreign
// secondaries in its subnet) it returns the error that refuses the
// removal, naming them; nil when none would go.
func guardRemovals(perr error, ifname string, have, remove []netlink.Addr, label string) error {
	var lost []string
	for _, r := range remove {
		p, ok := addrPrefix(r)
		if !ok || r.Flags&unix.IFA_F_SECONDARY != 0 {
			continue
		}
		for _, a := range have {
			q, ok := addrPrefix(a)
			if ok && a.Label != label && a.Flags&unix.IFA_F_SECONDARY != 0 && q.Bits() == p.Bits() && q.Masked() == p.Masked() {
				lost = append(lost, fmt.Sprintf("%s (with %s)", q, p))
			}
		}
	}
	if len(lost) == 0 {
		return nil
	}
	return fmt.Errorf("%w; removing netconf's addresses would make the kernel delete the foreign %s on %s: no address changed there", perr, strings.Join(lost, ", "), ifname)
}
