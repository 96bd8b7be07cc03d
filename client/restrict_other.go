//go:build !windows

package client

import "os"

// restrictDir makes the profile directory the user's alone (0700).
func restrictDir(dir string) error { return os.Chmod(dir, 0o700) }
