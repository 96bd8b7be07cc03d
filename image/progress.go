package image

import (
	"fmt"
	"io"
	"time"
)

// progress prints build steps with the time since the build started:
// "[ 1.2s] kernel: linux-image-6.1.0-56-amd64 6.1.192-2 verified".
type progress struct {
	w     io.Writer
	start time.Time
}

func newProgress(w io.Writer) *progress { return &progress{w: w, start: time.Now()} }

func (p *progress) step(name, format string, args ...any) {
	if p.w == nil {
		return
	}
	fmt.Fprintf(p.w, "[%5.1fs] %s: %s\n", time.Since(p.start).Seconds(), name, fmt.Sprintf(format, args...))
}
