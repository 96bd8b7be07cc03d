package policywatch

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"time"
)

// Trigger is why Loop asks for a sync.
type Trigger int

// Triggers of a sync.
const (
	FileChanged Trigger = iota + 1 // the policy file's version changed
	Reload                         // a reload was asked for (SIGHUP)
	Repair                         // the repair interval passed
)

// String is the trigger as the services log it ("policy file changed" is
// also what `otgate site apply` looks for in segment's events).
func (t Trigger) String() string {
	switch t {
	case FileChanged:
		return "policy file changed"
	case Reload:
		return "reload requested"
	case Repair:
		return "repair"
	}
	return fmt.Sprintf("trigger(%d)", int(t))
}

// Loop calls a service's sync when its policy must be read again.
type Loop struct {
	// File is checked every Poll (> 0) for a change.
	File *File
	Poll time.Duration
	// Repair is how often sync is called without a change (drift
	// repair); zero: never.
	Repair time.Duration
	// Reload asks for a sync at once; nil: never.
	Reload <-chan struct{}
}

// Run calls sync on every trigger until ctx ends, then returns nil. sync
// runs on Run's goroutine, one call at a time; it should Mark the File
// before reading it (until it does, the change keeps triggering). Run
// does not sync at start: the service does its first sync itself. A Poll
// that is not positive, or a negative Repair, is an error and nothing
// runs.
func (l Loop) Run(ctx context.Context, sync func(Trigger)) error {
	if l.Poll <= 0 {
		return fmt.Errorf("policywatch: poll interval %s: want more than 0", l.Poll)
	}
	if l.Repair < 0 {
		return fmt.Errorf("policywatch: repair interval %s: want 0 (never) or more", l.Repair)
	}
	if l.File == nil {
		return fmt.Errorf("policywatch: no file to watch")
	}
	poll := time.NewTicker(l.Poll)
	defer poll.Stop()
	var repair <-chan time.Time
	if l.Repair > 0 {
		t := time.NewTicker(l.Repair)
		defer t.Stop()
		repair = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
			if l.File.Changed() {
				sync(FileChanged)
			}
		case <-l.Reload:
			sync(Reload)
		case <-repair:
			sync(Repair)
		}
	}
}

// OnSignal returns a channel for Loop.Reload that holds a request after
// any of sigs arrives (requests not yet taken coalesce into one), until
// ctx ends. The signals stop terminating the process as soon as it
// returns.
func OnSignal(ctx context.Context, sigs ...os.Signal) <-chan struct{} {
	in := make(chan os.Signal, 1)
	signal.Notify(in, sigs...)
	out := make(chan struct{}, 1)
	go func() {
		defer signal.Stop(in)
		for {
			select {
			case <-ctx.Done():
				return
			case <-in:
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out
}
