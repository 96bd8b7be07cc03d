package syncbuf

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// Writers and a reader at once (run with -race): every write arrives
// whole.
func TestConcurrentWriteAndRead(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				b.Write([]byte("line\n"))
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if got := strings.Count(b.String(), "line\n"); got != 400 {
		t.Fatalf("%d lines, want 400", got)
	}
}

func TestWaitFor(t *testing.T) {
	var b Buffer
	go func() {
		time.Sleep(50 * time.Millisecond)
		b.Write([]byte("identity: serving on /run/x.sock\n"))
	}()
	if !b.WaitFor("serving on", 5*time.Second) {
		t.Fatal("WaitFor missed a line written later")
	}
	if b.WaitFor("never written", 50*time.Millisecond) {
		t.Fatal("WaitFor found a line never written")
	}
}
