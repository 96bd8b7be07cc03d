package qemu

import (
	"fmt"
	"strings"
	"time"
)

// Event is one QMP event QEMU reported (SHUTDOWN, POWERDOWN, RESET,
// WATCHDOG, ...).
type Event struct {
	Name string
	Data map[string]any
	Time time.Time
}

// String renders the event as "NAME key=value ...".
func (e Event) String() string {
	var b strings.Builder
	b.WriteString(e.Name)
	for k, v := range e.Data {
		fmt.Fprintf(&b, " %s=%v", k, v)
	}
	return b.String()
}

// Exit is how a VM ended.
type Exit struct {
	// Code is QEMU's exit status; -1 when a signal killed it.
	Code int
	// Signal names the signal that killed QEMU, if any.
	Signal string
	// Events are all QMP events in the order QEMU sent them.
	Events []Event
	// Killed is true when the harness killed QEMU (Kill, Close, timeout).
	Killed bool
	// TimedOut is true when WithTimeout's limit killed QEMU.
	TimedOut bool
	// Stderr holds the end of QEMU's own error output.
	Stderr string
}

// ShutdownReason is the reason of the last SHUTDOWN event
// ("guest-shutdown", "guest-reset", "host-qmp-quit", ...) or "".
func (e Exit) ShutdownReason() string {
	for i := len(e.Events) - 1; i >= 0; i-- {
		if e.Events[i].Name == "SHUTDOWN" {
			r, _ := e.Events[i].Data["reason"].(string)
			return r
		}
	}
	return ""
}

// WatchdogFired reports whether the emulated watchdog fired, and the action
// QEMU took.
func (e Exit) WatchdogFired() (action string, fired bool) {
	for _, ev := range e.Events {
		if ev.Name == "WATCHDOG" {
			a, _ := ev.Data["action"].(string)
			return a, true
		}
	}
	return "", false
}

// CleanPowerOff is true when the guest powered itself off: QEMU exited 0
// after a SHUTDOWN with reason guest-shutdown and no watchdog fired.
func (e Exit) CleanPowerOff() bool {
	_, wd := e.WatchdogFired()
	return e.Code == 0 && !e.Killed && !wd && e.ShutdownReason() == "guest-shutdown"
}

func (e Exit) String() string {
	var names []string
	for _, ev := range e.Events {
		names = append(names, ev.String())
	}
	s := fmt.Sprintf("code %d", e.Code)
	if e.Signal != "" {
		s += " signal " + e.Signal
	}
	if e.Killed {
		s += " (killed by harness)"
	}
	if e.TimedOut {
		s += " (timed out)"
	}
	return s + " events [" + strings.Join(names, "; ") + "]"
}
