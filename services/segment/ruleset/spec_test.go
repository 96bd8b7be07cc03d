package ruleset_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/services/segment/ruleset"
)

func validSpec() *ruleset.Spec {
	return &ruleset.Spec{
		BaselineSpec: ruleset.BaselineSpec{Uplink: "eth0", Downlinks: []string{"eth1", "eth1.20"}, ListenPorts: []uint16{443},
			Proxy: ruleset.ProxyIdentity{UID: 990}},
		EnforceInterfaces: []string{"eth1"},
		Assets: []ruleset.Asset{
			{Name: "plc-1", Zone: "a", Mode: ruleset.ModeEnforce, Address: "10.0.0.5", TCPPorts: []uint16{502}},
			{Name: "plc-2", Zone: "b", Mode: ruleset.ModeMonitor, Address: "10.0.1.5", TCPPorts: []uint16{502}},
		},
		Exceptions: []ruleset.Exception{{ID: "x", From: "10.0.0.5", To: "10.0.1.5", Protocol: "tcp", Port: 502,
			Owner: "ops", Expires: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}},
	}
}

func TestSpecValidation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(s *ruleset.Spec)
		want   string // "" = valid
	}{
		{"valid", func(*ruleset.Spec) {}, ""},
		{"root proxy", func(s *ruleset.Spec) { s.Proxy.UID = 0 }, "proxy.uid: 0 (root)"},
		{"proxy mark", func(s *ruleset.Spec) { s.Proxy.Mark = 0x6f74 }, ""},
		{"proxy mark with the would-block bit", func(s *ruleset.Spec) { s.Proxy.Mark = 0x80006f74 },
			"proxy.mark: 0x80006f74 shares bit 0x80000000 with the conntrack mark of would-block flows"},
		{"proxy mark with the uplink bit", func(s *ruleset.Spec) { s.Proxy.Mark = 0x40006f74 },
			"proxy.mark: 0x40006f74 shares bit 0x40000000 with the conntrack mark of uplink flows"},
		{"proxy mark with the OT-side bit", func(s *ruleset.Spec) { s.Proxy.Mark = 0x20006f74 },
			"proxy.mark: 0x20006f74 shares bit 0x20000000 with the conntrack mark of OT-side flows"},
		{"no downlinks", func(s *ruleset.Spec) { s.Downlinks = nil }, "downlinks: none given"},
		{"uplink reused", func(s *ruleset.Spec) { s.Downlinks = []string{"eth0"} }, `downlinks[0]: interface "eth0" already used as uplink`},
		{"bad ifname", func(s *ruleset.Spec) { s.Uplink = "eth 0" }, `uplink: bad interface name "eth 0"`},
		{"long ifname", func(s *ruleset.Spec) { s.Uplink = "abcdefghijklmnop" }, "uplink: bad interface name"},
		{"dup listen port", func(s *ruleset.Spec) { s.ListenPorts = []uint16{443, 443} }, "listen_ports[1]: duplicate port 443"},
		{"dup asset", func(s *ruleset.Spec) { s.Assets[1].Name = "plc-1" }, `assets[1] "plc-1": duplicate asset name`},
		{"bad mode", func(s *ruleset.Spec) { s.Assets[0].Mode = "audit" }, `mode "audit" (want enforce or monitor)`},
		{"zone modes disagree", func(s *ruleset.Spec) { s.Assets[1].Zone = "a" }, `zone "a" mode "monitor", but another asset`},
		{"ipv6 asset", func(s *ruleset.Spec) { s.Assets[0].Address = "fd00::1" }, `assets[0] "plc-1": address: "fd00::1" is not an IPv4 address`},
		{"dup address", func(s *ruleset.Spec) { s.Assets[1].Address = "10.0.0.5" }, `already used by asset "plc-1"`},
		{"port 0", func(s *ruleset.Spec) { s.Assets[0].TCPPorts = []uint16{0} }, "tcp_ports[0]: port 0"},
		{"bad endpoint", func(s *ruleset.Spec) { s.Assets[0].Endpoint = "x" }, `endpoint: "x" is not an IP address`},
		{"exception no owner", func(s *ruleset.Spec) { s.Exceptions[0].Owner = " " }, `exceptions[0] "x": no owner`},
		{"exception no expiry", func(s *ruleset.Spec) { s.Exceptions[0].Expires = time.Time{} }, "no expiry"},
		{"exception icmp", func(s *ruleset.Spec) { s.Exceptions[0].Protocol = "icmp" }, `protocol "icmp" (want tcp or udp)`},
		{"exception broadcast", func(s *ruleset.Spec) { s.Exceptions[0].To = "255.255.255.255" }, "not a unicast address"},
		{"enforce interface is a vlan downlink", func(s *ruleset.Spec) { s.EnforceInterfaces = []string{"eth1.20", "eth1"} }, ""},
		{"enforce interface is the uplink", func(s *ruleset.Spec) { s.EnforceInterfaces = []string{"eth1", "eth0"} },
			`enforce_interfaces[1]: interface "eth0" is not a downlink`},
		{"enforce interface unknown", func(s *ruleset.Spec) { s.EnforceInterfaces = []string{"eth2"} },
			`enforce_interfaces[0]: interface "eth2" is not a downlink`},
		{"dup enforce interface", func(s *ruleset.Spec) { s.EnforceInterfaces = []string{"eth1", "eth1"} },
			`enforce_interfaces[1]: duplicate interface "eth1"`},
		{"dup exception", func(s *ruleset.Spec) { s.Exceptions = append(s.Exceptions, s.Exceptions[0]) }, `exceptions[1] "x": duplicate id`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := validSpec()
			tc.mutate(s)
			err := s.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ruleset.ErrInvalidSpec) {
				t.Fatalf("Validate() = %v, want ErrInvalidSpec containing %q", err, tc.want)
			}
		})
	}
}

// Build leaves expired exceptions out and gives the others their remaining
// lifetime as the kernel timeout.
func TestBuildExceptionLifetimes(t *testing.T) {
	s := validSpec()
	now := time.Date(2029, 12, 31, 23, 0, 0, 0, time.UTC)
	s.Exceptions = append(s.Exceptions, ruleset.Exception{ID: "old", From: "10.0.0.5", To: "10.0.1.5", Protocol: "udp", Port: 47808,
		Owner: "ops", Expires: now.Add(-time.Second)})
	d, err := ruleset.Build(s, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, sd := range d.Sets {
		if sd.Set.Name != ruleset.SetExceptions {
			continue
		}
		if len(sd.Elements) != 1 || sd.Elements[0].Comment != "x" || sd.Elements[0].Timeout != time.Hour {
			t.Fatalf("exceptions set = %+v, want only x with 1h timeout", sd.Elements)
		}
		return
	}
	t.Fatal("no exceptions set")
}

// The forward chain drops toward the enforce interfaces after the
// monitor-mode replies and the assets' own verdicts, before the monitor
// zones' sources are accepted; the set holds the spec's interfaces.
func TestBuildEnforceInterfacesOrder(t *testing.T) {
	d, err := ruleset.Build(validSpec(), time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	at := map[string]int{}
	for i, n := range d.RuleNames(ruleset.ChainForward) {
		at[n] = i + 1
	}
	mr, ta, te, fm := at["forward/monitor-replies"], at["forward/to-asset"], at["forward/to-enforce-interface"], at["forward/from-monitor-zone"]
	if mr == 0 || ta == 0 || te == 0 || fm == 0 || !(mr < te && ta < te && te < fm) {
		t.Errorf("forward rules %v: want to-enforce-interface after monitor-replies and to-asset, before from-monitor-zone", d.RuleNames(ruleset.ChainForward))
	}
	for _, sd := range d.Sets {
		if sd.Set.Name != ruleset.SetEnforceIfaces {
			continue
		}
		if !sd.Set.Constant || len(sd.Elements) != 1 || strings.TrimRight(string(sd.Elements[0].Key), "\x00") != "eth1" || len(sd.Elements[0].Key) != 16 {
			t.Errorf("enforce_ifaces: constant %v, elements %+v; want constant, eth1 padded to 16 bytes", sd.Set.Constant, sd.Elements)
		}
		return
	}
	t.Error("no enforce_ifaces set")
}
