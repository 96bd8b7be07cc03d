package proxyd

import (
	"fmt"
	"strings"
	"time"
)

// phases times the proxy's start-up steps, so that the listening line
// tells an operator (and the boot benchmark) where a slow start went:
// each step talks to the identity service, and through it to the TPM.
type phases struct {
	start, last time.Time
	steps       []string
}

func newPhases() *phases {
	now := time.Now()
	return &phases{start: now, last: now}
}

// done ends the step called name.
func (p *phases) done(name string) {
	now := time.Now()
	p.steps = append(p.steps, fmt.Sprintf("%s %.2fs", name, now.Sub(p.last).Seconds()))
	p.last = now
}

func (p *phases) String() string {
	return fmt.Sprintf("started in %.2fs: %s", time.Since(p.start).Seconds(), strings.Join(p.steps, ", "))
}
