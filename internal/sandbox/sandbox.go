//go:build linux

// Package sandbox narrows what a gate service may ask of the kernel, for
// the rest of its life: a seccomp filter (DenyRawNetwork), the
// capabilities it keeps (LimitCapabilities) and the files it may reach
// (RestrictFiles, a Landlock ruleset).
//
// The proxy holds CAP_NET_RAW, because only a process with it may set
// SO_MARK, and the segment ruleset lets a socket reach the OT side only
// with the proxy's uid and mark (see services/segment/ruleset/doc.go). The
// capability grants more than the mark: a packet socket (AF_PACKET) writes
// frames straight to an interface's driver, past every nftables hook, and
// a raw IP socket or IP_TRANSPARENT sends packets with any header and any
// source address. A compromised proxy could use either to reach any host
// on an OT network with any protocol, where the ruleset allows it one port
// of each declared asset. DenyRawNetwork takes those uses away and leaves
// SO_MARK: the capability keeps doing the one thing it was raised for.
package sandbox

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Denied lists what DenyRawNetwork refuses, for logs and documentation.
const Denied = "packet sockets, raw sockets, IP_TRANSPARENT and io_uring"

// ErrUnsupported is returned on an architecture the filter does not know.
var ErrUnsupported = errors.New("sandbox: no seccomp filter for this architecture")

// DenyRawNetwork installs a seccomp filter on every thread of the calling
// process (SECCOMP_FILTER_FLAG_TSYNC, with no_new_privs) that makes these
// system calls fail with EPERM:
//   - socket(AF_PACKET, ...), and socket(..., SOCK_RAW or SOCK_PACKET, ...)
//     of any family;
//   - setsockopt IP_TRANSPARENT (SOL_IP) and IPV6_TRANSPARENT (SOL_IPV6);
//   - io_uring_setup, io_uring_enter and io_uring_register (an io_uring
//     opens sockets without the socket system call).
//
// A system call of another ABI (32-bit x86 or x32 on amd64) kills the
// process: Go never makes one, so only injected code would.
//
// The filter cannot be removed, and it is inherited by every thread and
// child made after it. Call it once, early, before the service reads any
// input from the network. It changes nothing when it fails.
func DenyRawNetwork() error {
	prog, err := rawNetworkFilter()
	if err != nil {
		return err
	}
	return install(prog)
}

// install loads prog as a seccomp filter of every thread.
func install(prog []unix.SockFilter) error {
	// no_new_privs is per thread; the kernel requires it of the thread
	// installing the filter (we hold no CAP_SYS_ADMIN) and sets it on the
	// others as TSYNC gives them the filter.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("sandbox: prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		return fmt.Errorf("sandbox: seccomp(SECCOMP_SET_MODE_FILTER, TSYNC): %w", errno)
	}
	if r != 0 {
		// With TSYNC, a positive return is the id of a thread that
		// could not be synchronised; the filter was not installed.
		return fmt.Errorf("sandbox: seccomp: thread %d could not take the filter", r)
	}
	return nil
}

// Offsets into struct seccomp_data (linux/seccomp.h): int nr; __u32 arch;
// __u64 instruction_pointer; __u64 args[6]. The arguments are loaded by
// their low 32 bits (both architectures are little-endian), which is what
// the kernel reads of the int arguments checked here.
const (
	offNr   = 0
	offArch = 4
	offArg0 = 16
	offArg1 = 24
	offArg2 = 32
)

// Return values.
const (
	retAllow  = unix.SECCOMP_RET_ALLOW
	retEPERM  = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	retENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	retKill   = unix.SECCOMP_RET_KILL_PROCESS
)

// rawNetworkFilter is the program DenyRawNetwork installs, for this
// architecture.
func rawNetworkFilter() ([]unix.SockFilter, error) {
	if auditArch == 0 {
		return nil, ErrUnsupported
	}
	var a asm
	a.loadNr()
	a.jeq(unix.SYS_SOCKET, "socket", "")
	a.jeq(unix.SYS_SETSOCKOPT, "setsockopt", "")
	a.jeq(unix.SYS_IO_URING_SETUP, "deny", "")
	a.jeq(unix.SYS_IO_URING_ENTER, "deny", "")
	a.jeq(unix.SYS_IO_URING_REGISTER, "deny", "")
	a.ret(retAllow)

	a.label("socket")
	a.ld(offArg0) // domain
	a.jeq(unix.AF_PACKET, "deny", "")
	a.ld(offArg1) // type, with SOCK_NONBLOCK and SOCK_CLOEXEC
	a.and(0xf)    // SOCK_TYPE_MASK
	a.jeq(unix.SOCK_RAW, "deny", "")
	a.jeq(unix.SOCK_PACKET, "deny", "")
	a.ret(retAllow)

	a.label("setsockopt")
	a.ld(offArg1) // level
	a.jeq(unix.SOL_IP, "sol_ip", "")
	a.jeq(unix.SOL_IPV6, "sol_ipv6", "")
	a.ret(retAllow)
	a.label("sol_ip")
	a.ld(offArg2) // optname
	a.jeq(unix.IP_TRANSPARENT, "deny", "")
	a.ret(retAllow)
	a.label("sol_ipv6")
	a.ld(offArg2)
	a.jeq(unix.IPV6_TRANSPARENT, "deny", "")
	a.ret(retAllow)

	a.label("deny")
	a.ret(retEPERM)
	a.label("kill")
	a.ret(retKill)
	return a.assemble()
}

// asm assembles classic BPF with named jump targets (jumps go forward
// only, at most 255 instructions).
type asm struct {
	ins    []unix.SockFilter
	jumps  []jump
	labels map[string]int
}

type jump struct {
	at     int
	jt, jf string // "": the next instruction
}

// BPF opcodes (linux/bpf_common.h).
const (
	bpfLdWAbs  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	bpfJeqK    = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	bpfJsetK   = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
	bpfAndK    = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K
	bpfRetK    = unix.BPF_RET | unix.BPF_K
	bpfMaxJump = 255
)

func (a *asm) emit(op uint16, k uint32) {
	a.ins = append(a.ins, unix.SockFilter{Code: op, K: k})
}

// loadNr opens a filter: a system call of another architecture or ABI
// jumps to label "kill" (the filter must define it), and the
// accumulator then holds the system call's number.
func (a *asm) loadNr() {
	a.ld(offArch)
	a.jeq(auditArch, "", "kill")
	a.ld(offNr)
	if x32Bit != 0 {
		// amd64: x32 system calls are the same numbers with bit 30 set.
		a.jset(x32Bit, "kill", "")
	}
}

func (a *asm) ld(off uint32) { a.emit(bpfLdWAbs, off) }
func (a *asm) and(k uint32)  { a.emit(bpfAndK, k) }
func (a *asm) ret(k uint32)  { a.emit(bpfRetK, k) }
func (a *asm) jeq(k uint32, jt, jf string) {
	a.jumps = append(a.jumps, jump{at: len(a.ins), jt: jt, jf: jf})
	a.emit(bpfJeqK, k)
}
func (a *asm) jset(k uint32, jt, jf string) {
	a.jumps = append(a.jumps, jump{at: len(a.ins), jt: jt, jf: jf})
	a.emit(bpfJsetK, k)
}

func (a *asm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.ins)
}

// assemble resolves the jumps.
func (a *asm) assemble() ([]unix.SockFilter, error) {
	for _, j := range a.jumps {
		for _, t := range []struct {
			name string
			off  *uint8
		}{{j.jt, &a.ins[j.at].Jt}, {j.jf, &a.ins[j.at].Jf}} {
			if t.name == "" {
				continue
			}
			to, ok := a.labels[t.name]
			if !ok {
				return nil, fmt.Errorf("sandbox: filter: no label %q", t.name)
			}
			d := to - j.at - 1
			if d < 0 || d > bpfMaxJump {
				return nil, fmt.Errorf("sandbox: filter: jump to %q out of range (%d)", t.name, d)
			}
			*t.off = uint8(d)
		}
	}
	return a.ins, nil
}
