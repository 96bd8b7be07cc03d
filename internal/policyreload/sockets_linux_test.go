//go:build linux

package policyreload

import (
	"testing"

	"github.com/otgate/otgate/services/netconf"
	"github.com/otgate/otgate/services/overlay"
	"github.com/otgate/otgate/services/proxy/adminapi"
	"github.com/otgate/otgate/services/segment"
)

// The default sockets are the services' own (kept here as strings so the
// type builds on every platform the CLI runs on).
func TestDefaultSocketsAreTheServices(t *testing.T) {
	want := Sockets{Proxy: adminapi.DefaultSocket, Segment: segment.DefaultSocket, Overlay: overlay.DefaultSocket, Netconf: netconf.DefaultSocket}
	if got := DefaultSockets(); got != want {
		t.Fatalf("DefaultSockets() = %+v, want %+v", got, want)
	}
}
