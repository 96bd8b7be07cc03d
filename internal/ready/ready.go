// Package ready lets a service tell init that it is ready, and later that it
// is unhealthy or healthy again, in the spirit of sd_notify: init passes the
// write end of a pipe and names it in $OTGATE_NOTIFY_FD. Outside init (on a
// development host) the variable is unset and every call is a no-op.
package ready

import (
	"fmt"
	"os"
	"strconv"
	"sync"
)

// Env names the variable holding the notification file descriptor.
const Env = "OTGATE_NOTIFY_FD"

// Messages a service may send, one per line.
const (
	MsgReady     = "READY=1"
	MsgUnhealthy = "HEALTHY=0"
	MsgHealthy   = "HEALTHY=1"
	// MsgStatus prefixes a one-line note init shows in the service's
	// status row (e.g. why it is about to fail).
	MsgStatus = "STATUS="
)

var (
	mu sync.Mutex
	f  *os.File
)

func send(line string) error {
	mu.Lock()
	defer mu.Unlock()
	if f == nil {
		v := os.Getenv(Env)
		if v == "" {
			return nil
		}
		fd, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("ready: bad %s=%q", Env, v)
		}
		f = os.NewFile(uintptr(fd), "otgate-notify")
	}
	_, err := f.WriteString(line + "\n")
	return err
}

// Notify tells init the service is ready.
func Notify() error { return send(MsgReady) }

// Unhealthy tells init the service cannot do its job right now (init stops
// petting the watchdog while a critical service is unhealthy).
func Unhealthy(reason string) error { return send(MsgUnhealthy + " " + reason) }

// Healthy clears Unhealthy.
func Healthy() error { return send(MsgHealthy) }

// Status sets the note init shows in the service's status row. Init gives
// the notify descriptor to notify and one-shot (exit) services.
func Status(note string) error { return send(MsgStatus + note) }
