package main

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/otgate/otgate/client"
)

// TestConnectListensOnLoopbackOnly: every connection to connect's
// listener becomes a tunnel under the user's credential, so a --listen
// address other hosts could reach is refused, naming the flag and the
// address, before the credential is even read; loopback addresses get
// past the check (here to "not logged in", the profile being empty).
func TestConnectListensOnLoopbackOnly(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:5020", ":5020", "[::]:5020", "192.0.2.7:5020", "plc-host.example:502"} {
		err := runConnect([]string{"plc-7", "--listen", listen, "--profile", t.TempDir()}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--listen "+listen) || !strings.Contains(err.Error(), "not a loopback address") {
			t.Errorf("--listen %s: %v, want a refusal naming the flag and saying it is not loopback", listen, err)
		}
	}
	err := runConnect([]string{"plc-7", "--listen", "127.0.0.1", "--profile", t.TempDir()}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `--listen "127.0.0.1"`) || !strings.Contains(err.Error(), "missing port") {
		t.Errorf("--listen without a port: %v", err)
	}
	for _, listen := range []string{"127.0.0.1:0", "127.0.0.2:5020", "[::1]:0", "localhost:0"} {
		err := runConnect([]string{"plc-7", "--listen", listen, "--profile", t.TempDir()}, io.Discard, io.Discard)
		if !errors.Is(err, client.ErrNoProfile) {
			t.Errorf("--listen %s: %v, want it past the address check (not logged in)", listen, err)
		}
	}
}
