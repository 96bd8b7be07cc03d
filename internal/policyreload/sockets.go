// Package policyreload is the last step of `otgate site apply` on a
// running gate: it tells the services that a new policy is stored and
// reports what each did. The proxy is asked to reload through its admin
// socket (root only); it validates the new policy first and keeps the old
// one when it does not load. Segment, overlay and netconf watch the policy
// file themselves (they poll it), so Run waits until each reports the new
// policy on its status socket, or says why it did not.
//
// A service whose socket does not exist is not running: it loads the
// policy file when it starts, and Run says so. Run changes nothing but
// the proxy's policy in memory.
package policyreload

import (
	"fmt"
	"time"
)

// Sockets are the running services' sockets Run talks to; an empty path
// leaves that service out.
type Sockets struct {
	Proxy   string // the proxy's admin socket (asked to reload)
	Segment string // segment's status socket
	Overlay string // overlay's allocation socket
	Netconf string // netconf's query socket
}

// DefaultSockets are the appliance's sockets.
func DefaultSockets() Sockets {
	return Sockets{
		Proxy:   "/run/otgate/proxy/admin.sock",
		Segment: "/run/otgate/segment/segment.sock",
		Overlay: "/run/otgate/overlay/overlay.sock",
		Netconf: "/run/otgate/netconf/netconf.sock",
	}
}

// DefaultWait is how long Run waits for the file-watching services (they
// poll the file every 2 s by default; a busy machine is slower).
const DefaultWait = 30 * time.Second

// State is what became of one service.
type State string

// States of an Outcome.
const (
	Reloaded   State = "reloaded"    // the service enforces the new policy
	NotRunning State = "not running" // no socket: it loads the file when it starts
	Failed     State = "FAILED"      // still on the old policy, or unreachable
)

// Outcome is what one service did with the new policy.
type Outcome struct {
	Service string
	State   State
	// Detail says what the service reported, or what the operator should
	// do when it did not take the new policy.
	Detail string
}

func (o Outcome) String() string { return fmt.Sprintf("%s: %s: %s", o.Service, o.State, o.Detail) }

// Failures counts the outcomes in state Failed.
func Failures(out []Outcome) int {
	n := 0
	for _, o := range out {
		if o.State == Failed {
			n++
		}
	}
	return n
}
