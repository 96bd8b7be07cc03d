//go:build linux

package sandbox

import "golang.org/x/sys/unix"

// auditArch is the seccomp_data arch of this process's system calls;
// x32Bit marks x32 system call numbers.
const (
	auditArch uint32 = unix.AUDIT_ARCH_X86_64
	x32Bit    uint32 = 0x40000000
)

// forkCalls are the system calls besides clone and clone3 that make a
// process.
var forkCalls = []uint32{unix.SYS_FORK, unix.SYS_VFORK}
