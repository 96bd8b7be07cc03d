package alloc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/otgate/otgate/internal/atomicfile"
)

// ReadTable reads what the allocator persisted, leaves the directory as
// it is (a temporary file there may be the service's write in progress)
// and reports a missing file as empty and a damaged one as corrupt.
func TestReadTable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "alloc.cbor")
	if table, err := ReadTable(path); err != nil || len(table) != 0 {
		t.Errorf("missing file: %v, %v; want an empty table", table, err)
	}
	a := open(t, path)
	if _, err := a.Apply(Config{}, []Request{{Asset: "plc-1", Zone: "cell-1"}, {Asset: "rtu-1", Zone: "cell-2", Pinned: ip("100.64.9.9")}}, t0); err != nil {
		t.Fatal(err)
	}
	busy := filepath.Join(dir, atomicfile.TempPrefix+"alloc.cbor-123")
	if err := os.WriteFile(busy, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)

	table, err := ReadTable(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(table), fmt.Sprint(a.Table()); got != want {
		t.Errorf("ReadTable = %s, want the allocator's %s", got, want)
	}
	if _, err := os.Stat(busy); err != nil {
		t.Errorf("the writer's temporary file was touched: %v", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("the state file changed")
	}

	// The state file damaged or lost on its own: the mirror's table (what
	// the service's next start runs from), and neither copy touched.
	for _, damage := range []func() error{
		func() error { return os.WriteFile(path, before[:len(before)-1], 0o600) },
		func() error { return os.Remove(path) },
	} {
		if err := damage(); err != nil {
			t.Fatal(err)
		}
		table, err := ReadTable(path)
		if err != nil {
			t.Fatalf("state file damaged, mirror sound: %v", err)
		}
		if got, want := fmt.Sprint(table), fmt.Sprint(a.Table()); got != want {
			t.Errorf("state file damaged: ReadTable = %s, want the mirror's %s", got, want)
		}
		if err := os.WriteFile(path, before[:len(before)-1], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if after, _ := os.ReadFile(path); string(after) != string(before[:len(before)-1]) {
		t.Error("ReadTable rewrote the damaged state file")
	}

	// Both damaged: an error, never an empty table.
	mirror, _ := os.ReadFile(MirrorPath(path))
	if err := os.WriteFile(MirrorPath(path), mirror[:len(mirror)-1], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadTable(path); !errors.Is(err, ErrCorruptState) {
		t.Errorf("both copies truncated: %v, want ErrCorruptState", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if table, err := ReadTable(path); err == nil {
		t.Errorf("state file missing, mirror damaged: %v, want an error", table)
	}
}

// A reader racing the allocator's writes sees one whole table each time,
// the one before a write or the one after: the file is replaced by a
// rename, and a file once opened is never written again.
func TestReadTableWhileReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alloc.cbor")
	a := open(t, path)
	// Two plans big enough (tens of kilobytes) that a read takes several
	// read calls; every asset of small is also in big, with the same
	// address (a released asset back within the quarantine keeps it).
	var small, big []Request
	for i := 0; i < 2000; i++ {
		r := Request{Asset: fmt.Sprintf("asset-%04d", i), Zone: fmt.Sprintf("zone-%02d", i%20)}
		big = append(big, r)
		if i%4 != 0 {
			small = append(small, r)
		}
	}
	if _, err := a.Apply(Config{}, big, t0); err != nil {
		t.Fatal(err)
	}
	bigTable := fmt.Sprint(a.Table())
	if _, err := a.Apply(Config{}, small, t0); err != nil {
		t.Fatal(err)
	}
	smallTable := fmt.Sprint(a.Table())

	const writes = 200
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		for i := 0; i < writes; i++ {
			reqs := big
			if i%2 == 1 {
				reqs = small
			}
			if _, err := a.Apply(Config{}, reqs, t0); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	reads, seen := 0, map[string]bool{}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		table, err := ReadTable(path)
		if err != nil {
			t.Errorf("read %d: %v", reads, err)
			break
		}
		switch fmt.Sprint(table) {
		case bigTable:
			seen["big"] = true
		case smallTable:
			seen["small"] = true
		default:
			t.Errorf("read %d: a table that was never written (%d entries)", reads, len(table))
		}
		if t.Failed() {
			break
		}
		reads++
	}
	wg.Wait()
	t.Logf("%d reads during %d writes; saw %v", reads, writes, seen)
	if !seen["big"] || !seen["small"] {
		t.Errorf("the reads saw only %v of the two tables", seen)
	}
}
