package main

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/services/proxy/wire"
)

// connectNotices prints what `otgate connect` hears about its sessions
// (the gate's notice stream, or local timers without one) on stderr:
//
//	otgate: plc-7: session 12 ends in 59s (rule night-shift)
//	otgate: plc-7: session 12: grant late-shift takes it over from day-shift (its end stays)
//	otgate: plc-7: session 12 ended by the gate: policy reload: ...
type connectNotices struct {
	asset string
	w     io.Writer
	mu    *sync.Mutex // shared with the stdout lines
	dir   string      // the --profile flag's value

	dropped atomic.Uint64 // the gate's drop count last reported
	down    atomic.Bool   // the stream was reported lost
}

func (c *connectNotices) say(format string, a ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.w, "otgate: %s: "+format+"\n", append([]any{c.asset}, a...)...)
}

func (c *connectNotices) warn(r *wire.Reply, left time.Duration) {
	c.say("session %s ends in %v (rule %s)", r.Session, left.Round(time.Second), r.Rule)
}

func (c *connectNotices) notice(r *wire.Reply, n wire.Notice) {
	switch n.Kind {
	case wire.NoticeDeadline:
		if n.Until == r.Until {
			if n.Rule != "" && n.Rule != r.Rule {
				// A shift change: another grant took the session over,
				// its end as it was.
				c.say("session %s: grant %s takes it over from %s (its end stays)", n.Session, n.Rule, r.Rule)
			}
			return // otherwise what the gate's reply said at connect
		}
		if t := n.UntilTime(); t.IsZero() {
			c.say("session %s: the gate set no end any more (rule %s)", n.Session, n.Rule)
		} else {
			c.say("session %s: the gate moved its end to %s (rule %s)", n.Session, t.Local().Format("15:04:05"), n.Rule)
		}
	case wire.NoticeRules:
		// The tool's connections stay up; its next requests may get
		// exceptions they did not before (or pass where they did not).
		c.say("session %s: %s", n.Session, n.Reason)
	case wire.NoticeEnded:
		if n.ByGate {
			c.say("session %s ended by the gate: %s", n.Session, n.Reason)
		}
	}
	if old := c.dropped.Load(); n.Dropped > old && c.dropped.CompareAndSwap(old, n.Dropped) {
		c.say("the gate dropped %d notices this client read too slowly", n.Dropped-old)
	}
}

func (c *connectNotices) stream(err error) {
	var closed *client.NoticesClosedError
	switch {
	case err == nil:
		if c.down.Swap(false) {
			c.say("notice stream open again")
		}
	case errors.Is(err, client.ErrNoticesUnsupported):
		c.say("the gate sends no session notices (an older gate): warnings come from local timers and cannot follow a deadline the gate moves")
	case errors.As(err, &closed):
		c.down.Store(true)
		c.say("%v; warnings come from local timers", err)
	default:
		c.down.Store(true)
		c.say("%v", err)
	}
}

// credential says that connect took a new login's credential for its new
// connections, or why it did not take one.
func (c *connectNotices) credential(sw *client.CredentialSwitch, err error) {
	if err != nil {
		var nf *client.NotFollowedError
		var unprotected *client.UnprotectedError
		switch {
		case errors.As(err, &nf) && nf.Err == nil && !nf.Expired:
			c.say("%v: start otgate connect again to use the new one", err)
		case errors.As(err, &unprotected):
			unprotected.LogoutCmd = logoutCommand(c.dir)
			c.say("%v", err)
		default:
			c.say("%v", err)
		}
		return
	}
	c.say("new login: new connections use the credential of %s for %s, valid until %s (connections open already keep theirs until the gate ends them)",
		sw.User, sw.Gate, sw.NotAfter.Local().Format("2006-01-02 15:04:05 MST"))
}
