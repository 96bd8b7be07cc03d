//go:build linux && !amd64 && !arm64

package sandbox

// No filter is written for other architectures: DenyRawNetwork returns
// ErrUnsupported.
const (
	auditArch uint32 = 0
	x32Bit    uint32 = 0
)

var forkCalls []uint32
