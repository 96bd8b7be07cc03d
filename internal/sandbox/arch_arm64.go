//go:build linux

package sandbox

import "golang.org/x/sys/unix"

// auditArch is the seccomp_data arch of this process's system calls;
// arm64 has no second ABI numbered apart (32-bit arm is another arch).
const (
	auditArch uint32 = unix.AUDIT_ARCH_AARCH64
	x32Bit    uint32 = 0
)

// forkCalls are the system calls besides clone and clone3 that make a
// process: none on arm64.
var forkCalls []uint32
