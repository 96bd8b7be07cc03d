package main

import (
	"fmt"
	"io"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/ready"
	"github.com/otgate/otgate/services/identity/api"
)

// identityCheckTrust is the trust gate between the identity service and
// the services that must not run in quarantine (the proxy). Init runs it as
// the one-shot row "trust" after identity is ready:
//
//   - not in quarantine: exit 0, the row is done, dependents start;
//   - in quarantine: print the reason and the remedy, tell init the note
//     for `otgate status` (STATUS=), exit bootcfg.ExitNoRestart: init marks
//     the row failed without retrying and never starts its dependents. The
//     deny-all ruleset stays; identity keeps serving status and sign.
//
// Leaving quarantine needs a reboot into the approved image (or a reseal,
// then a reboot), which runs the gate again.
func identityCheckTrust(socket string, w io.Writer, exit func(int)) error {
	c, err := api.Dial(socket)
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
	_ = ready.Status("QUARANTINE: " + st.Reason)
	exit(bootcfg.ExitNoRestart)
	return nil
}
