//go:build windows

package client

import "syscall"

// Winsock's own numbers for an accept out of sockets or buffers.
func init() {
	acceptAgainErrs = append(acceptAgainErrs,
		syscall.Errno(10024), // WSAEMFILE
		syscall.Errno(10055), // WSAENOBUFS
		syscall.Errno(10053), // WSAECONNABORTED
	)
}
