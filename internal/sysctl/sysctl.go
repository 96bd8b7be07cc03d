// Package sysctl reads and writes kernel parameters under /proc/sys. A
// path under /proc/sys/net shows the network namespace of the thread that
// opens it.
package sysctl

import (
	"errors"
	"io"
	"os"
	"strings"
)

// Read returns the value at path, trimmed (at most 64 bytes: a sysctl
// is short, and a path that is not one must not be read without end).
func Read(path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	b := make([]byte, 64)
	n, err := io.ReadFull(fh, b)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return "", err
	}
	return strings.TrimSpace(string(b[:n])), nil
}

// Write writes v to path. O_WRONLY without O_CREATE: a missing sysctl is
// an error, never a new regular file.
func Write(path, v string) error {
	fh, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := fh.WriteString(v); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}
