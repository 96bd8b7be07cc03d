package main

import (
	"fmt"
	"io"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/services/identity/api"
)

// identityCheckTrust is the trust gate between the identity service and
// the services that must not run in quarantine (the proxy). Init runs it as
// the one-shot row "trust", started beside identity (its own start-up then
// overlaps identity's TPM work instead of following it); with wait > 0 it
// waits that long for identity to answer on socket, which identity does
// only once it has unsealed (or found it cannot):
//
//   - not in quarantine: exit 0, the row is done, dependents start;
//   - in quarantine: print the reason and the remedy, tell init the note
//     for `otgate status` (STATUS=, through note: the reason and the short
//     remedy), exit bootcfg.ExitNoRestart: init marks the row failed
//     without retrying and never starts its dependents. The deny-all
//     ruleset stays; identity keeps serving status only;
//   - identity not answering within wait: the same, with that reason (fail
//     closed: without an identity nothing may start that needs its keys).
//
// Leaving quarantine needs a reboot into the approved image (or a reseal,
// then a reboot), which runs the gate again.
//
// note sends init the status note (ready.Status).
func identityCheckTrust(socket string, wait time.Duration, w io.Writer, exit func(int), note func(string) error) error {
	c, err := dialWaiting(socket, wait)
	if err != nil && wait > 0 {
		reason := fmt.Sprintf("the identity service did not answer within %s: %v", wait, err)
		fmt.Fprintf(w, "trust: NOT TRUSTED: %s\n", reason)
		fmt.Fprintf(w, "trust: the proxy and everything that depends on \"trust\" stay stopped; the deny-all ruleset stays in force (`otgate status` shows why identity is not serving)\n")
		_ = note("NOT TRUSTED: " + reason)
		exit(bootcfg.ExitNoRestart)
		return nil
	}
	if err != nil {
		return fmt.Errorf("identity check-trust: %w", err)
	}
	defer c.Close()
	st, err := c.Status()
	if err != nil {
		return fmt.Errorf("identity check-trust: %w", err)
	}
	if !st.Quarantine {
		mode := "TPM key"
		if st.DevMode {
			mode = "DEV MODE software key"
		}
		fmt.Fprintf(w, "trust: %s (%s) is not in quarantine: services that need the data key may start\n", st.DeviceURI, mode)
		return nil
	}
	fmt.Fprintf(w, "trust: GATE IN QUARANTINE: %s\n", st.Reason)
	fmt.Fprintf(w, "trust: what to do: %s\n", st.Remedy)
	fmt.Fprintf(w, "trust: the proxy and everything that depends on \"trust\" stay stopped; the deny-all ruleset stays in force\n")
	_ = note(quarantineNote(st))
	exit(bootcfg.ExitNoRestart)
	return nil
}

// quarantineNote is the trust row's one-line note in `otgate status`: the
// reason and what to do (the service's short remedy; the full one is on
// the console and in `otgate identity status`).
func quarantineNote(st *api.Status) string {
	remedy := st.RemedyShort
	if remedy == "" {
		remedy = st.Remedy
	}
	if remedy == "" {
		remedy = "see the break-glass recovery in services/identity/README.md"
	}
	return "QUARANTINE: " + st.Reason + " -- what to do: " + remedy
}

// dialWaiting connects to the identity socket, retrying for up to wait
// while it is not there yet or refuses (identity starting or restarting).
func dialWaiting(socket string, wait time.Duration) (*api.Client, error) {
	deadline := time.Now().Add(wait)
	pause := 2 * time.Millisecond
	for {
		c, err := api.Dial(socket)
		if err == nil || !time.Now().Before(deadline) {
			return c, err
		}
		time.Sleep(min(pause, time.Until(deadline)))
		pause = min(2*pause, 10*time.Millisecond)
	}
}
