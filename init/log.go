package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// ringSize is how many recent lines the log ring keeps.
const ringSize = 1000

// logFileMax is the size at which the log file is rewritten from the ring.
const logFileMax = 256 << 10

// logger writes "init: ..." lines (and prefixed service output) to the
// console, keeps the last ringSize lines in memory for the status socket and
// mirrors them to a file under /run/otgate.
type logger struct {
	mu      sync.Mutex
	out     []io.Writer
	ring    []string
	next    int
	full    bool
	file    *os.File
	path    string
	written int64
}

func newLogger(out ...io.Writer) *logger {
	return &logger{out: out, ring: make([]string, ringSize)}
}

// Printf logs one "init: " line.
func (l *logger) Printf(format string, args ...any) {
	l.line("init: " + fmt.Sprintf(format, args...))
}

// line logs one complete line as is.
func (l *logger) line(s string) {
	s = strings.TrimRight(s, "\n")
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, w := range l.out {
		io.WriteString(w, s+"\n")
	}
	l.ring[l.next] = s
	l.next = (l.next + 1) % len(l.ring)
	if l.next == 0 {
		l.full = true
	}
	if l.file != nil {
		if l.written > logFileMax {
			l.rewriteLocked()
		} else if n, err := l.file.WriteString(s + "\n"); err == nil {
			l.written += int64(n)
		}
	}
}

// setOutputs replaces the console writers (after /dev/console is opened).
func (l *logger) setOutputs(out ...io.Writer) {
	l.mu.Lock()
	l.out = out
	l.mu.Unlock()
}

// mirror starts writing the ring, and every later line, to path.
func (l *logger) mirror(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("log file %s: %w", path, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.file, l.path = f, path
	l.rewriteLocked()
	return nil
}

func (l *logger) rewriteLocked() {
	if err := l.file.Truncate(0); err != nil {
		return
	}
	if _, err := l.file.Seek(0, io.SeekStart); err != nil {
		return
	}
	l.written = 0
	for _, s := range l.linesLocked() {
		n, _ := l.file.WriteString(s + "\n")
		l.written += int64(n)
	}
}

// Lines returns the ring, oldest first.
func (l *logger) Lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.linesLocked()
}

func (l *logger) linesLocked() []string {
	var out []string
	if l.full {
		out = append(out, l.ring[l.next:]...)
	}
	return append(out, l.ring[:l.next]...)
}
