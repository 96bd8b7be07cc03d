package baseline

import (
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/services/segment/ruleset"
)

// The proxy's uid in the ruleset is the uid the image gives otgate-proxy.
func TestProxyUIDMatchesImagePasswd(t *testing.T) {
	b, err := os.ReadFile("../../../rootfs/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Split(l, ":")
		if len(f) < 3 || f[0] != ProxyUser {
			continue
		}
		uid, err := strconv.Atoi(f[2])
		if err != nil {
			t.Fatalf("passwd line %q: %v", l, err)
		}
		if uid != ProxyUID {
			t.Fatalf("rootfs/etc/passwd gives %s uid %d, the ruleset uses %d", ProxyUser, uid, ProxyUID)
		}
		return
	}
	t.Fatalf("no %s in rootfs/etc/passwd", ProxyUser)
}

func TestFromBoot(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     bootcfg.Config
		wantErr bool
	}{
		{"board", bootcfg.Config{Uplink: "eth0", Downlinks: []string{"eth1"}}, false},
		{"two downlinks", bootcfg.Config{Uplink: "eth0", Downlinks: []string{"eth1", "eth2"}}, false},
		{"no uplink", bootcfg.Config{Downlinks: []string{"eth1"}}, true},
		{"no downlink", bootcfg.Config{Uplink: "eth0"}, true},
		{"uplink is a downlink", bootcfg.Config{Uplink: "eth0", Downlinks: []string{"eth0"}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := FromBoot(&tc.cfg)
			err := b.Validate()
			if tc.wantErr {
				if !errors.Is(err, ruleset.ErrInvalidSpec) {
					t.Fatalf("Validate: %v, want ErrInvalidSpec", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.Uplink != tc.cfg.Uplink || len(b.Downlinks) != len(tc.cfg.Downlinks) || !b.DHCPClient ||
				!slices.Equal(b.ListenPorts, []uint16{ProxyListenPort, ModbusSecurityPort}) || b.Proxy.UID != ProxyUID || b.Proxy.Mark != ProxyMark {
				t.Fatalf("FromBoot = %+v", b)
			}
		})
	}
}
