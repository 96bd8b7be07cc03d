//go:build linux

package sandbox

import (
	"os"

	"golang.org/x/sys/unix"
)

// KeepToItself installs a seccomp filter on every thread of the calling
// process (TSYNC, with no_new_privs) under which it can act on no other
// process:
//   - kill, tgkill, rt_sigqueueinfo and rt_tgsigqueueinfo fail with EPERM
//     unless their target is the process itself (the Go runtime signals
//     its own threads with tgkill; a service may raise a signal on
//     itself);
//   - tkill (a thread by id alone) and pidfd_send_signal (a process by
//     descriptor) fail with EPERM;
//   - ptrace, process_vm_readv and process_vm_writev fail with EPERM;
//   - it makes no other process: clone without CLONE_THREAD (and fork,
//     vfork where the architecture has them) fail with EPERM, clone3
//     with ENOSYS (its flags are out of the filter's reach; Go and libc
//     then fall back to clone). Threads are made as before.
//
// The gate's root services run as uid 0, and uid 0 may signal any other
// uid-0 process without a capability: SIGTERM to init is a shutdown,
// repeated SIGKILLs a service's crash loop. Under this filter a
// compromised service can do neither. Nor can it leave a child holding a
// connection after it exits: the identity service checks a root caller's
// capabilities by its pid (/proc/<pid>/status) while the connection is
// open, and a pid is not reused while a process holding the connection
// lives. A system call of another ABI kills the process, as under
// DenyRawNetwork.
//
// The filter names the process's pid when it is installed: a child made
// after it could signal its parent, not itself. Call it once, early, in a
// process that starts no other. It changes nothing when it fails.
func KeepToItself() error {
	prog, err := keepToItselfFilter(uint32(os.Getpid()))
	if err != nil {
		return err
	}
	return install(prog)
}

// keepToItselfFilter is KeepToItself's program for this architecture and
// pid self.
func keepToItselfFilter(self uint32) ([]unix.SockFilter, error) {
	if auditArch == 0 {
		return nil, ErrUnsupported
	}
	var a asm
	a.loadNr()
	for _, nr := range []uint32{unix.SYS_KILL, unix.SYS_TGKILL, unix.SYS_RT_SIGQUEUEINFO, unix.SYS_RT_TGSIGQUEUEINFO} {
		a.jeq(nr, "self", "")
	}
	for _, nr := range append([]uint32{unix.SYS_TKILL, unix.SYS_PIDFD_SEND_SIGNAL, unix.SYS_PTRACE,
		unix.SYS_PROCESS_VM_READV, unix.SYS_PROCESS_VM_WRITEV}, forkCalls...) {
		a.jeq(nr, "deny", "")
	}
	a.jeq(unix.SYS_CLONE, "clone", "")
	a.jeq(unix.SYS_CLONE3, "nosys", "")
	a.ret(retAllow)

	// clone's flags are the first argument on every architecture (the
	// order of the others differs); CLONE_THREAD is in the low 32 bits.
	a.label("clone")
	a.ld(offArg0)
	a.jset(unix.CLONE_THREAD, "allow", "deny")
	a.label("nosys")
	a.ret(retENOSYS)

	// The target pid (tgid for tgkill) is the first argument; its low 32
	// bits are what the kernel reads of a pid_t. 0 and -1 (the process
	// group, every process) are not the process itself.
	a.label("self")
	a.ld(offArg0)
	a.jeq(self, "allow", "deny")
	a.label("allow")
	a.ret(retAllow)
	a.label("deny")
	a.ret(retEPERM)
	a.label("kill")
	a.ret(retKill)
	return a.assemble()
}
