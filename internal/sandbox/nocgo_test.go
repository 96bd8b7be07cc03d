//go:build !cgo

package sandbox

// testCgo says whether this test binary is linked with cgo.
const testCgo = false
