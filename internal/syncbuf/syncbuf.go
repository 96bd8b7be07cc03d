// Package syncbuf is a byte buffer that one goroutine may write while
// another reads it: a child process's output copied in by exec while a
// test or a lab waits for a line in it.
package syncbuf

import (
	"bytes"
	"strings"
	"sync"
	"time"
)

// Buffer is a bytes.Buffer safe for concurrent Write and String.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// WaitFor reports whether the buffer comes to contain sub within d.
func (s *Buffer) WaitFor(sub string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !strings.Contains(s.String(), sub) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}
