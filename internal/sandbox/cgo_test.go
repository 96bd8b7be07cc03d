//go:build cgo

package sandbox

// testCgo: this test binary is linked with cgo.
const testCgo = true
