// Package sandboxtest has the file probes the services' confinement tests
// run in a confined child: each returns nil when the kernel let it
// through, else the error (EACCES when the Landlock ruleset refused it).
package sandboxtest

import (
	"os"
	"path/filepath"
)

// Write opens the existing file path for writing (nothing is written).
func Write(path string) func() error {
	return func() error {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		return f.Close()
	}
}

// Create makes a file named x in dir.
func Create(dir string) func() error {
	return func() error { return os.WriteFile(filepath.Join(dir, "x"), []byte("x"), 0o600) }
}

// OpenRW opens path for reading and writing, as a device is opened.
func OpenRW(path string) func() error {
	return func() error {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err == nil {
			f.Close()
		}
		return err
	}
}

// Read reads the file path.
func Read(path string) func() error {
	return func() error { _, err := os.ReadFile(path); return err }
}
