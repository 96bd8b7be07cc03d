package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
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

// consoleQueue is how many lines the console may be behind before lines
// are dropped from it (not from the ring or init.log).
const consoleQueue = 256

// consoleWriter writes to a console from its own goroutine, through a
// queue of at most consoleQueue writes. Init logs on every path
// (supervision, the watchdog's health, shutdown) under the logger's lock,
// and a console can stop taking output for good: a serial console
// stopped with ctrl-S (XOFF), hardware flow control with no cable, a
// stderr pipe nobody reads. A write to it would block, and with it every
// service's supervision (a crashed critical service kept its "ready" and
// the watchdog its petting) and the shutdown. Write never blocks: when
// the queue is full the line is dropped from the console and counted, and
// the count is shown when the console takes output again (the ring and
// init.log keep every line).
type consoleWriter struct {
	w  io.Writer
	ch chan consoleItem

	mu      sync.Mutex
	dropped int
}

// consoleItem is one write, or (flushed not nil) a flush marker.
type consoleItem struct {
	b       []byte
	flushed chan struct{}
}

func newConsoleWriter(w io.Writer) *consoleWriter {
	c := &consoleWriter{w: w, ch: make(chan consoleItem, consoleQueue)}
	go c.run()
	return c
}

func (c *consoleWriter) Write(b []byte) (int, error) {
	select {
	case c.ch <- consoleItem{b: append([]byte(nil), b...)}:
	default:
		c.mu.Lock()
		c.dropped++
		c.mu.Unlock()
	}
	return len(b), nil
}

func (c *consoleWriter) run() {
	for it := range c.ch {
		if it.flushed != nil {
			close(it.flushed)
			continue
		}
		c.mu.Lock()
		n := c.dropped
		c.dropped = 0
		c.mu.Unlock()
		if n > 0 {
			fmt.Fprintf(c.w, "init: console: %d lines not shown (the console took no output; the status log and /run/otgate/init.log have them)\n", n)
		}
		c.w.Write(it.b)
	}
}

// flush waits up to d until what was written before it is out.
func (c *consoleWriter) flush(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	done := make(chan struct{})
	select {
	case c.ch <- consoleItem{flushed: done}:
	case <-t.C:
		return
	}
	select {
	case <-done:
	case <-t.C:
	}
}

// flush waits up to d for the console writers to write out what was
// logged (before a power-off, or init's exit on a development host).
func (l *logger) flush(d time.Duration) {
	l.mu.Lock()
	out := append([]io.Writer(nil), l.out...)
	l.mu.Unlock()
	for _, w := range out {
		if c, ok := w.(*consoleWriter); ok {
			c.flush(d)
		}
	}
}
