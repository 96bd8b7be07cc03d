package qemu

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/otgate/otgate/board"
)

// StartT starts a VM for a test and fails the test if it cannot. The VM is
// closed in t.Cleanup (QEMU and swtpm killed, temporary files removed) even
// when the test fails or panics. The serial log goes to its own file, which
// is removed when the test passes and kept, with its path and last lines
// logged, when it fails. Unless WithTimeout is given, QEMU is killed shortly
// before the test's deadline so the test fails with the console instead of
// a panic.
func StartT(t testing.TB, b *board.Board, imageDir string, opts ...Option) *VM {
	t.Helper()
	logDir, err := os.MkdirTemp("", "otgate-serial-"+safeName(t.Name())+"-")
	if err != nil {
		t.Fatalf("qemu: serial log directory: %v", err)
	}
	logPath := filepath.Join(logDir, b.Name+".log")
	all := []Option{WithSerialLog(logPath)}
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			if left := time.Until(dl) - 15*time.Second; left > 0 {
				all = append(all, WithTimeout(left))
			}
		}
	}
	all = append(all, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vm, err := Start(ctx, b, imageDir, all...)
	if err != nil {
		os.RemoveAll(logDir)
		t.Fatalf("qemu: start %s: %v", b.Name, err)
	}
	t.Cleanup(func() {
		// What the processes were doing, before Close ends them.
		var diag string
		if t.Failed() {
			diag = vm.Diagnose()
		}
		if err := vm.Close(); err != nil {
			t.Errorf("qemu: close %s VM: %v", b.Name, err)
		}
		if t.Failed() {
			for _, l := range KernelFaults(vm.Lines()) {
				t.Logf("qemu: %s: the guest kernel reported: %s", b.Name, l)
			}
			t.Logf("qemu: %s serial log kept at %s; it ends:\n%s", b.Name, vm.SerialLogPath(), vm.con.tail(40))
			t.Logf("qemu: %s VM when the test failed:\n%s", b.Name, diag)
			return
		}
		os.RemoveAll(logDir)
	})
	return vm
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

func safeName(s string) string {
	s = unsafeChars.ReplaceAllString(s, "_")
	if len(s) > 40 {
		s = s[:40]
	}
	return s
}
