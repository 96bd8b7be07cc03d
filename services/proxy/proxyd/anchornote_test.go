package proxyd

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
)

// flakyCounter is an anchor counter (the TPM's rules, as in the audit
// package's tests) whose reads and advances fail while fail is set; the
// TPM-backed one is exercised in anchor_test.go.
type flakyCounter struct {
	mu      sync.Mutex
	value   uint64
	defined bool
	fail    bool
}

func (c *flakyCounter) Read() (uint64, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail {
		return 0, false, errors.New("identity service unreachable")
	}
	return c.value, c.defined, nil
}

func (c *flakyCounter) Advance(from uint64, fromDefined bool) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail {
		return 0, errors.New("identity service unreachable")
	}
	if c.defined == fromDefined && (!c.defined || c.value == from) {
		c.value, c.defined = c.value+1, true
	}
	return c.value, nil
}

func (c *flakyCounter) set(f func(*flakyCounter)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(c)
}

// The proxy's status note follows the audit log's anchor: nothing while
// the periodic advances are made, DEGRADED while they fail, cleared when
// they are made again, and DEGRADED for good once something else moved
// the counter (an anchor-mismatch).
func TestWatchAnchorNote(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := &flakyCounter{value: 7} // never advanced: the new log defines it
	w, err := audit.Open(t.TempDir(), key, audit.WithAnchor(c), audit.WithAnchorEvery(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var mu sync.Mutex
	var notes []string
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go watchAnchor(ctx, w, 5*time.Millisecond, t.Logf, func(s string) error {
		mu.Lock()
		defer mu.Unlock()
		notes = append(notes, s)
		return nil
	})
	waitNote := func(what string, ok func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			n := len(notes)
			last := ""
			if n > 0 {
				last = notes[n-1]
			}
			mu.Unlock()
			if n > 0 && ok(last) {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%s: notes %q", what, notes)
	}

	time.Sleep(50 * time.Millisecond) // advances made: no note
	mu.Lock()
	if len(notes) != 0 {
		t.Fatalf("notes while the anchor advances: %q", notes)
	}
	mu.Unlock()
	c.set(func(c *flakyCounter) { c.fail = true })
	waitNote("advances failing", func(s string) bool {
		return strings.HasPrefix(s, "DEGRADED: audit log anchor: the periodic advance failed: ") && strings.Contains(s, "identity service unreachable")
	})
	c.set(func(c *flakyCounter) { c.fail = false })
	waitNote("advances made again", func(s string) bool { return s == "" })
	c.set(func(c *flakyCounter) { c.value += 5 })
	waitNote("counter moved by something else", func(s string) bool { return strings.Contains(s, "ANCHOR MISMATCH") })
}
