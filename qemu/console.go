package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"
)

// ErrExited is returned by WaitFor when QEMU ended before the pattern
// appeared on the console.
var ErrExited = errors.New("qemu: VM exited")

// Bounds of what a console keeps in memory, so that a long `make run`
// session does not grow without end: the last maxLines lines (up to twice
// as many between trims), and a line without a newline is cut into pieces
// of maxLineBytes.
const (
	maxLines     = 100000
	maxLineBytes = 64 << 10
)

// console collects the serial output: into the log file, an optional tee,
// and a list of complete lines that WaitFor scans (the last maxLines).
type console struct {
	mu       sync.Mutex
	lines    []string
	dropped  int // lines trimmed from the front of lines
	maxLines int
	partial  []byte
	// unterminated: the last line came without a newline (QEMU ended in
	// the middle of it); WaitFor does not match it.
	unterminated bool
	closed       bool
	changed      chan struct{} // closed and replaced on every change
	bytes        int64         // output so far
	last         time.Time     // when the last output came
}

func newConsole() *console {
	return &console{changed: make(chan struct{}), maxLines: maxLines}
}

// copyFrom reads r until EOF, writing every byte to the sinks and splitting
// lines. Write errors of the sinks are ignored: losing the terminal copy
// must not stop the log.
func (c *console) copyFrom(r io.Reader, sinks ...io.Writer) {
	buf := make([]byte, 32*1024)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			for _, s := range sinks {
				if s != nil {
					_, _ = s.Write(buf[:n])
				}
			}
			c.add(buf[:n])
		}
		if err != nil {
			c.finish()
			return
		}
	}
}

func (c *console) add(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bytes += int64(len(p))
	c.last = time.Now()
	c.partial = append(c.partial, p...)
	for {
		i := bytes.IndexByte(c.partial, '\n')
		if i < 0 {
			break
		}
		c.addLine(c.partial[:i])
		c.partial = c.partial[i+1:]
	}
	for len(c.partial) >= maxLineBytes {
		c.addLine(c.partial[:maxLineBytes])
		c.partial = c.partial[maxLineBytes:]
	}
	// Keep the partial line in a buffer of its own: appending to the old
	// one would hold every byte read so far.
	c.partial = append([]byte(nil), c.partial...)
	c.notify()
}

// addLine appends a complete line and trims the oldest ones beyond
// maxLines; c.mu is held.
func (c *console) addLine(b []byte) {
	c.lines = append(c.lines, cleanLine(b))
	if c.maxLines > 0 && len(c.lines) >= 2*c.maxLines {
		drop := len(c.lines) - c.maxLines
		c.lines = append([]string(nil), c.lines[drop:]...)
		c.dropped += drop
	}
}

func (c *console) finish() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.partial) > 0 {
		c.addLine(c.partial)
		c.partial = nil
		c.unterminated = true
	}
	c.closed = true
	c.notify()
}

func (c *console) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// ansiEscape matches terminal control sequences (CSI and the charset
// selects OVMF emits when it clears the screen).
var ansiEscape = regexp.MustCompile(`\x1b(\[[0-9;?=]*[@-~]|[()][0-9A-Za-z])`)

// cleanLine drops the carriage return and terminal escapes, so a pattern
// matches what a person sees; the log file keeps the raw bytes.
func cleanLine(b []byte) string {
	return ansiEscape.ReplaceAllString(strings.TrimRight(string(b), "\r"), "")
}

// output returns how many bytes the console has had and when the last
// came.
func (c *console) output() (int64, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes, c.last
}

// snapshot returns the lines so far (the last maxLines at least; with the
// unterminated end of the output when QEMU ended in a line).
func (c *console) snapshot() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

// tail returns the last n lines as one string, for error messages.
func (c *console) tail(n int) string {
	l := c.snapshot()
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

type matcher func(string) bool

func compilePattern(pattern any) (matcher, string, error) {
	switch p := pattern.(type) {
	case string:
		if p == "" {
			return nil, "", errors.New("qemu: WaitFor: empty pattern")
		}
		return func(l string) bool { return strings.HasPrefix(l, p) }, fmt.Sprintf("line starting %q", p), nil
	case *regexp.Regexp:
		if p == nil {
			return nil, "", errors.New("qemu: WaitFor: nil regexp")
		}
		return p.MatchString, fmt.Sprintf("line matching /%s/", p), nil
	default:
		return nil, "", fmt.Errorf("qemu: WaitFor: pattern of type %T (want string prefix or *regexp.Regexp)", pattern)
	}
}

// waitFor scans every line kept from the first one and returns the first
// match, waiting for more output as needed. Only lines that ended with a
// newline match: the rest of a line QEMU did not finish writing (it died
// in the middle) never does.
func (c *console) waitFor(ctx context.Context, pattern any) (string, error) {
	match, desc, err := compilePattern(pattern)
	if err != nil {
		return "", err
	}
	next := 0 // counts every line, trimmed ones too
	for {
		c.mu.Lock()
		next = max(next, c.dropped)
		complete := len(c.lines)
		if c.unterminated {
			complete--
		}
		for ; next-c.dropped < complete; next++ {
			if l := c.lines[next-c.dropped]; match(l) {
				c.mu.Unlock()
				return l, nil
			}
		}
		closed, changed := c.closed, c.changed
		c.mu.Unlock()
		if closed {
			return "", fmt.Errorf("%w before a %s appeared; console ends:\n%s", ErrExited, desc, c.tail(20))
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return "", fmt.Errorf("qemu: waiting for a %s: %w; console ends:\n%s", desc, ctx.Err(), c.tail(20))
		}
	}
}
