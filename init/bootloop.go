package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Boot-loop guard. A critical service that fails stops the watchdog's
// petting, so the board resets and tries again from scratch: that clears
// transient faults (a wedged TPM, a controller that needs a power cycle).
// A fault that survives every reset, though, turns the gate into a board
// that resets every few minutes, forever, with its console cut off each
// time. After bootLoopLimit boots in a row that never reached ready, init
// stops that: a critical service failing before this boot's ready no
// longer stops the petting, so the gate stays up, failed closed (what
// depends on the failed service, the proxy included, is not started),
// for an engineer to read the console and `otgate status`. The count is
// kept in /perm (unreadyFile) and cleared by the first boot that reaches
// ready; init itself hanging still stops the petting (the guard only
// changes what a failed service means). Without persistent storage
// (/perm on tmpfs) every boot counts as the first.
const (
	unreadyFile   = "init/unready"
	bootLoopLimit = 3
)

// countUnready reads how many boots in a row before this one did not
// reach ready (a missing file: none), and records this boot as one more
// until it reaches ready (clearUnready). The write is atomic and durable.
func countUnready(path string) (uint64, error) {
	var prev uint64
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if prev, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err != nil {
			// A damaged count is no count: start over rather than refuse.
			prev = 0
			err = fmt.Errorf("%s: not a count (%q), starting from 0", path, strings.TrimSpace(string(b)))
		}
	case errors.Is(err, os.ErrNotExist):
		err = nil
	default:
		return 0, err
	}
	if werr := writeFileAtomic(path, []byte(strconv.FormatUint(prev+1, 10)+"\n"), 0o644); werr != nil {
		return prev, errors.Join(err, werr)
	}
	return prev, err
}

// clearUnready records that this boot reached ready.
func clearUnready(path string) error {
	return writeFileAtomic(path, []byte("0\n"), 0o644)
}

// bootLoopGuard is the watchdog's health check for a boot that follows
// prev boots that never reached ready: from bootLoopLimit on, a critical
// service's failure before this boot is ready does not stop the petting
// (said once, loudly); after ready, or below the limit, it is healthy as
// it is.
func bootLoopGuard(log *logger, prev uint64, ready func() bool, healthy func() (bool, string)) func() (bool, string) {
	if prev < bootLoopLimit {
		return healthy
	}
	var once sync.Once
	return func() (bool, string) {
		ok, why := healthy()
		if ok || ready() {
			return ok, why
		}
		once.Do(func() {
			log.Printf("watchdog: BOOT LOOP: the %d boots before this one did not reach ready; %s: petting anyway, so the gate stays up for diagnosis with access denied (the first boot that reaches ready ends this)", prev, why)
		})
		return true, ""
	}
}
