package netconf

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// inNetNS runs fn with the calling thread in ns, for the few calls that
// open sockets in "the current" namespace (packet and UDP sockets, which
// stay in the namespace they were opened in). A zero or None handle
// runs fn where the process is.
func inNetNS(ns netns.NsHandle, fn func() error) error {
	if !nsGiven(ns) {
		return fn()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netconf: current network namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netconf: enter network namespace: %w", err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: it dies with this goroutine instead
		// of serving others in the wrong namespace.
		return fmt.Errorf("netconf: back to the original network namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// nsGiven tells whether ns names a namespace: the zero NsHandle (a
// Config left unset) means "the process's own", like None (-1).
func nsGiven(ns netns.NsHandle) bool { return ns > 0 }
