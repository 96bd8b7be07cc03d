//go:build !unix

package audit

import (
	"errors"
	"fmt"
	"os"
	"runtime"
)

// freeBytes: the log is written on the gate (Linux); elsewhere it is only
// read and verified, and a Writer with a reserve cannot tell its free
// space.
func freeBytes(string) (int64, error) {
	return 0, errors.New("audit log: free space unknown on " + runtime.GOOS)
}

// lockDir: no directory lock off Unix (the log is written on the gate).
func lockDir(dir string) (*os.File, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	return d, nil
}
