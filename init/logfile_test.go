package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The log file under /run/otgate stays within its limit however long the
// lines are, and keeps the newest ones.
func TestLogFileBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "init.log")
	log := newLogger(io.Discard)
	if err := log.mirror(path); err != nil {
		t.Fatal(err)
	}
	var last string
	for i := 0; i < 3000; i++ {
		last = fmt.Sprintf("svc: line %d %s", i, strings.Repeat("x", 1000))
		log.line(last)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > logFileMax+maxLine+1 {
			t.Fatalf("after line %d: log file %d bytes, limit %d", i, fi.Size(), logFileMax)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil || !strings.HasSuffix(string(b), last+"\n") {
		t.Fatalf("log file does not end with the newest line: %v", err)
	}
}
