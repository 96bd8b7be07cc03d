//go:build !linux

package main

import (
	"io"
	"time"
)

// reloadServices does nothing off Linux: no gate services run there.
func reloadServices(out io.Writer, t applyTarget, doc []byte, since time.Time) error { return nil }
