package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnknownBoardNamesItAndWritesNothing(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	err := run("qemu-sparc", false, false, false, out, true, false, true)
	if err == nil || !strings.Contains(err.Error(), `unknown board "qemu-sparc"`) || !strings.Contains(err.Error(), "qemu-x86_64") {
		t.Fatalf("run(qemu-sparc) = %v, want an error naming it and the known boards", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("unknown board created %s", out)
	}
}
