package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"unicode/utf8"
)

// ringSize is how many recent lines the log ring keeps.
const ringSize = 1000

// logFileMax is the size at which the log file is rewritten from the ring
// (its newest lines, half that size).
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

// maxLine bounds one line in bytes: the ring's memory is bounded by
// ringSize*maxLine, however long the lines a service writes or the
// reasons it gives (a line of its output comes in pieces of at most 4 KiB
// and fits whole, with its name in front).
const maxLine = 4096 + 256

// line logs one complete line, made valid UTF-8 and cut to maxLine.
func (l *logger) line(s string) {
	s = cleanText(strings.TrimRight(s, "\n"), maxLine)
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
	// The newest lines that fill half the file's limit: the whole ring
	// can be more than the limit (long lines), and the file would then be
	// over it again at once and rewritten on every line.
	lines := l.linesLocked()
	i, size := len(lines), 0
	for i > 0 && size+len(lines[i-1])+1 <= logFileMax/2 {
		i--
		size += len(lines[i]) + 1
	}
	for _, s := range lines[i:] {
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

// cleanText makes s valid UTF-8 (a service's bytes can be anything; the
// status socket answers in CBOR, whose text strings must be UTF-8, and a
// client rejects the whole answer over one bad byte) and cuts it to at
// most max bytes at a character boundary, saying so.
func cleanText(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= max {
		return s
	}
	const more = " [...]"
	cut := max - len(more)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + more
}
