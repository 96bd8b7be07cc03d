package proxyd

import (
	"context"
	"errors"
	"time"

	"github.com/otgate/otgate/services/identity/api"
)

// identityWatchEvery is how often the proxy asks the identity service
// for its state.
const identityWatchEvery = 2 * time.Second

// errQuarantine ends run when the gate went into quarantine while the
// proxy ran; main exits with bootcfg.ExitNoRestart so init holds the row
// failed instead of restarting it.
var errQuarantine = errors.New("the gate is in quarantine")

// watchIdentity asks the identity service for its state every interval
// until ctx ends, and sends the reason on the returned channel (then
// stops) when the service reports quarantine. The "trust" row keeps the
// proxy from starting on a gate in quarantine; this catches the gate
// going into quarantine while the proxy runs: the identity service
// restarted and its data key no longer unseals, because the boot
// measurement PCR changed after boot. The proxy holds secrets it unsealed
// earlier, so it must stop on its own.
//
// An identity service that does not answer (init is restarting it) is
// logged once, and again when it answers: meanwhile new sessions fail
// their TLS handshake (the device key signs through the service), live
// ones go on.
func watchIdentity(ctx context.Context, status func() (*api.Status, error), interval time.Duration, logf func(string, ...any)) <-chan string {
	out := make(chan string, 1)
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		var down error
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			st, err := status()
			switch {
			case err != nil:
				if down == nil {
					logf("otgate-proxy: identity service not answering: %v; new sessions fail their TLS handshake until it does, live sessions go on", err)
				}
				down = err
				continue
			case down != nil:
				logf("otgate-proxy: identity service answering again")
				down = nil
			}
			if st.Quarantine {
				reason := st.Reason
				if reason == "" {
					reason = "the identity service reports quarantine"
				}
				out <- reason
				return
			}
		}
	}()
	return out
}
