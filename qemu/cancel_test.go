package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/otgate/otgate/board"
)

// A start-up cancelled (make run's Ctrl-C during the boot) ends without
// looking at the image or starting anything: Start returns the
// cancellation.
func TestStartCancelledStartsNothing(t *testing.T) {
	b, err := board.Lookup("qemu-x86_64")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join("/usr/bin", b.QEMU.Binary)); err != nil {
		t.Skipf("%s not installed", b.QEMU.Binary)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// An image directory with nothing in it: a start that went on would
	// fail on the missing kernel instead.
	vm, err := Start(ctx, b, t.TempDir())
	if !errors.Is(err, context.Canceled) || vm != nil {
		t.Fatalf("Start with a cancelled context: %v, %v; want context canceled and no VM", vm, err)
	}
}
