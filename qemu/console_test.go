package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A line split across reads is matched once its newline comes, and not
// before; the unfinished end of a console that QEMU left in the middle of
// a line never matches.
func TestWaitForMatchesOnlyFinishedLines(t *testing.T) {
	c := newConsole()
	c.add([]byte("boot\ninit: rea"))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	if l, err := c.waitFor(ctx, "init: rea"); err == nil {
		t.Fatalf("matched the half-written line %q", l)
	}
	cancel()
	c.add([]byte("dy (1.2s)\n"))
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if l, err := c.waitFor(ctx, "init: ready ("); err != nil || l != "init: ready (1.2s)" {
		t.Fatalf("split line: got %q, %v", l, err)
	}
	c.add([]byte("init: ready (2"))
	c.finish()
	_, err := c.waitFor(ctx, "init: ready (2")
	if !errors.Is(err, ErrExited) {
		t.Fatalf("a line cut by QEMU's end matched: err %v, want ErrExited", err)
	}
	if got := c.snapshot(); got[len(got)-1] != "init: ready (2" {
		t.Errorf("the cut line is not in the console's lines for the record: %q", got)
	}
}

// A long session's console does not grow without bound in memory: the
// oldest lines are dropped, a line without a newline is cut, and WaitFor
// still finds new lines.
func TestConsoleKeepsBoundedLines(t *testing.T) {
	c := newConsole()
	r, w := io.Pipe()
	done := make(chan struct{})
	go func() { c.copyFrom(r); close(done) }()
	line := strings.Repeat("x", 60) + "\n"
	chunk := []byte(strings.Repeat(line, 1000))
	for i := 0; i < 3*maxLines/1000; i++ {
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Write([]byte(strings.Repeat("y", 3*maxLineBytes))); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("\nmarker after it all\n")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if l, err := c.waitFor(ctx, "marker after"); err != nil || l != "marker after it all" {
		t.Fatalf("got %q, %v", l, err)
	}
	if n := len(c.snapshot()); n > 2*maxLines {
		t.Errorf("console keeps %d lines after %d, want at most %d", n, 3*maxLines+5, 2*maxLines)
	}
	for _, l := range c.snapshot() {
		if len(l) > maxLineBytes {
			t.Fatalf("a line of %d bytes kept, want at most %d", len(l), maxLineBytes)
		}
	}
	w.Close()
	<-done
}

// The serial log file is rotated at its limit: the newest output is in
// the named file, the part before in <path>.1, and nothing beyond that
// stays on disk.
func TestSerialLogRotates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "serial.log")
	if err := os.WriteFile(path+".1", []byte("an earlier run's\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const limit = 4096
	l, err := createSerialLog(path, limit)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".1"); !os.IsNotExist(err) {
		t.Errorf("the earlier run's %s.1 is still there (%v)", path, err)
	}
	for i := 0; i < 1000; i++ {
		if _, err := fmt.Fprintf(l, "line %04d of the console\n", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var total int64
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > limit {
			t.Errorf("%s is %d bytes, over the limit %d", f, st.Size(), limit)
		}
		total += st.Size()
	}
	if len(files) != 2 || total > 2*limit {
		t.Errorf("files %v, %d bytes in all: want serial.log and serial.log.1, at most %d bytes", files, total, 2*limit)
	}
	cur, _ := os.ReadFile(path)
	if !strings.HasSuffix(string(cur), "line 0999 of the console\n") {
		t.Errorf("%s does not end with the newest line: ...%q", path, cur[max(0, len(cur)-60):])
	}
	old, _ := os.ReadFile(path + ".1")
	if !strings.HasPrefix(string(cur), "line ") || !strings.HasSuffix(string(old), " of the console\n") {
		t.Errorf("rotation split a write: %s.1 ends %q, %s starts %q", path, old[max(0, len(old)-30):], path, cur[:min(30, len(cur))])
	}
}
