//go:build linux

package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Securebits (linux/securebits.h) set by LimitCapabilities, each locked:
// uid 0 gets no capabilities from an exec (NOROOT), a change of uid does
// not touch them (NO_SETUID_FIXUP), and no ambient capability can be
// raised again (NO_CAP_AMBIENT_RAISE).
const secureBits = 1<<0 | 1<<1 | // SECBIT_NOROOT, _LOCKED
	1<<2 | 1<<3 | // SECBIT_NO_SETUID_FIXUP, _LOCKED
	1<<5 | // SECBIT_KEEP_CAPS_LOCKED (KEEP_CAPS off)
	1<<6 | 1<<7 // SECBIT_NO_CAP_AMBIENT_RAISE, _LOCKED

// LimitCapabilities is for a service that must run as root: it leaves
// every thread of the process with only the capabilities keep (numbers,
// e.g. unix.CAP_SYS_TIME), effective and permitted; inheritable and
// ambient sets are emptied, securebits locked so that uid 0 means nothing
// more to the kernel than its file ownership (SECBIT_NOROOT), and
// no_new_privs set, so that neither this process nor anything it runs can
// have another capability again: permitted never grows without an exec,
// and an exec gains none (no_new_privs: no set-user-ID or file
// capabilities; NOROOT: nothing for uid 0). A root service so limited can
// still read and write root's files, but a compromise of it cannot load
// a module, rewrite the firewall, open a raw socket or trace another
// process unless keep says so.
//
// The bounding set is left as it is: with the above it can raise nothing
// (and a new user namespace starts with a full one whatever it was),
// while taking each capability out of it is one system call on every
// thread, a stop of the world each: some 40 of them cost a service 0.15 s
// of its start under QEMU's emulation, on the boot's path to ready.
//
// It must be called before the process starts any child, and needs
// CAP_SETPCAP; it checks every thread's /proc status afterwards and
// returns an error if one differs. Go's runtime applies each step to all
// threads (syscall.AllThreadsSyscall), which a binary linked with cgo
// cannot do: there it returns an error.
func LimitCapabilities(keep ...uintptr) error {
	last, err := lastCap()
	if err != nil {
		return err
	}
	var mask uint64
	for _, c := range keep {
		if c > last {
			return fmt.Errorf("sandbox: capability %d: the kernel's last is %d", c, last)
		}
		mask |= 1 << c
	}
	// What the process must already hold: capset cannot raise beyond it.
	held, err := threadCaps("self")
	if err != nil {
		return err
	}
	if held.prm&mask != mask {
		return fmt.Errorf("sandbox: keeping capabilities %#x, but the process holds only %#x", mask, held.prm)
	}
	if err := allThreads("clear ambient capabilities", unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil {
		return err
	}
	if err := allThreads("lock securebits", unix.SYS_PRCTL, unix.PR_SET_SECUREBITS, secureBits, 0); err != nil {
		return err
	}
	if err := allThreads("set no_new_privs", unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		return err
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(mask), Permitted: uint32(mask)},
		{Effective: uint32(mask >> 32), Permitted: uint32(mask >> 32)},
	}
	if err := allThreads("capset", unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); err != nil {
		return err
	}
	return checkThreads(caps{eff: mask, prm: mask, bnd: held.bnd, noNewPrivs: true})
}

// allThreads makes one system call on every thread of the process
// (syscall.AllThreadsSyscall6); what names it in the error.
func allThreads(what string, trap, a1, a2, a3 uintptr) error {
	if _, _, e := syscall.AllThreadsSyscall6(trap, a1, a2, a3, 0, 0, 0); e != 0 {
		if e == syscall.ENOTSUP {
			return fmt.Errorf("sandbox: %s: a binary linked with cgo cannot change every thread's credentials (build it with CGO_ENABLED=0, as the image builder does)", what)
		}
		return fmt.Errorf("sandbox: %s: %w", what, e)
	}
	return nil
}

// checkThreads checks that every thread holds want, as the kernel now
// sees it (/proc/self/task).
func checkThreads(want caps) error {
	tasks, err := filepath.Glob("/proc/self/task/*")
	if err != nil || len(tasks) == 0 {
		return fmt.Errorf("sandbox: list this process's threads: %v", err)
	}
	for _, t := range tasks {
		got, err := threadCaps("self/task/" + filepath.Base(t))
		if os.IsNotExist(err) {
			continue // the thread has exited
		}
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("sandbox: thread %s holds %+v after the change, want %+v", filepath.Base(t), got, want)
		}
	}
	return nil
}

// caps are a thread's capability sets and flags, from /proc status.
type caps struct {
	eff, prm, inh, bnd, amb uint64
	noNewPrivs              bool
}

func (c caps) String() string {
	return fmt.Sprintf("CapEff %016x CapPrm %016x CapInh %016x CapBnd %016x CapAmb %016x NoNewPrivs %v",
		c.eff, c.prm, c.inh, c.bnd, c.amb, c.noNewPrivs)
}

// threadCaps reads /proc/<which>/status.
func threadCaps(which string) (caps, error) {
	b, err := os.ReadFile("/proc/" + which + "/status")
	if err != nil {
		return caps{}, err
	}
	var c caps
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		var dst *uint64
		switch k {
		case "CapEff":
			dst = &c.eff
		case "CapPrm":
			dst = &c.prm
		case "CapInh":
			dst = &c.inh
		case "CapBnd":
			dst = &c.bnd
		case "CapAmb":
			dst = &c.amb
		case "NoNewPrivs":
			c.noNewPrivs = v == "1"
			continue
		default:
			continue
		}
		if *dst, err = strconv.ParseUint(v, 16, 64); err != nil {
			return caps{}, fmt.Errorf("sandbox: /proc/%s/status: %s %q: %w", which, k, v, err)
		}
	}
	return c, nil
}

// lastCap is the kernel's highest capability number.
func lastCap() (uintptr, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("sandbox: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 8)
	if err != nil || n > 63 {
		return 0, fmt.Errorf("sandbox: /proc/sys/kernel/cap_last_cap %q: want 0-63", b)
	}
	return uintptr(n), nil
}

// DropCapabilities takes the capabilities drop out of every thread's
// effective, permitted, inheritable and ambient sets, for good: a
// service that needed one only to start (CAP_NET_BIND_SERVICE, to bind
// a port below 1024 as an unprivileged user) gives it up once that is
// done. Lowering needs no privilege (unlike LimitCapabilities, no
// CAP_SETPCAP); the others the process holds stay as they are. A
// capability the process does not hold is no error. It checks every
// thread's /proc status afterwards.
func DropCapabilities(drop ...uintptr) error {
	var mask uint64
	for _, c := range drop {
		if c > 63 {
			return fmt.Errorf("sandbox: capability %d: there are 64 at most", c)
		}
		mask |= 1 << c
	}
	held, err := threadCaps("self")
	if err != nil {
		return err
	}
	if (held.eff|held.prm|held.inh|held.amb)&mask == 0 {
		return nil
	}
	for _, c := range drop {
		if held.amb&(1<<c) == 0 {
			continue
		}
		if err := allThreads(fmt.Sprintf("lower ambient capability %d", c), unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_LOWER, c); err != nil {
			return err
		}
	}
	want := caps{eff: held.eff &^ mask, prm: held.prm &^ mask, inh: held.inh &^ mask, bnd: held.bnd, amb: held.amb &^ mask, noNewPrivs: held.noNewPrivs}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(want.eff), Permitted: uint32(want.prm), Inheritable: uint32(want.inh)},
		{Effective: uint32(want.eff >> 32), Permitted: uint32(want.prm >> 32), Inheritable: uint32(want.inh >> 32)},
	}
	if err := allThreads("capset", unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); err != nil {
		return err
	}
	return checkThreads(want)
}
