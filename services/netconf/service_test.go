package netconf

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otgate/otgate/services/netconf/internal/lab"
	"github.com/otgate/otgate/site"
)

func storePolicy(t *testing.T, dir, yaml string) {
	t.Helper()
	src := []byte("site: svc\n" + yaml)
	s, err := site.Parse("site.yaml", src, site.Options{})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := site.Compile(s, "site.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	if err := site.Store(dir, doc); err != nil {
		t.Fatal(err)
	}
}

// TestServicePolicyChanges: the service configures the downlinks from a
// policy, follows an edit on Reload, and refuses a policy naming an
// interface that is not a downlink (status error, nothing changed).
func TestServicePolicyChanges(t *testing.T) {
	lab.NeedRoot(t)
	gate, plant := lab.NewNS(t, "gate"), lab.NewNS(t, "plant")
	lab.Veth(t, gate, "eth1", plant, "p1")
	lab.Veth(t, gate, "eth2", plant, "p2")
	dir := t.TempDir()
	pdir := filepath.Join(dir, "policy")
	storePolicy(t, pdir, "zones:\n  - {name: cell-1, owner: ot, mode: enforce, interface: eth1, subnet: 10.77.0.0/24, gate_address: 10.77.0.1}\n")

	var notified atomic.Int32
	cfg := Config{
		Uplink:     Uplink{Mode: UplinkNone},
		Downlinks:  []string{"eth1", "eth2"},
		Addresses:  Addresses{"eth1": pfx("10.77.0.1/24"), "eth2": pfx("10.78.0.1/24")},
		PolicyPath: filepath.Join(pdir, site.AppliedFile), SocketPath: filepath.Join(dir, "nc.sock"),
		Resolver: &Resolver{Path: filepath.Join(dir, "resolv.conf")}, AbsentAfter: time.Minute, Poll: time.Hour, Repair: time.Hour,
	}
	svc, err := New(cfg, gate.Handle, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	svc.NS = gate.NS
	svc.Notify = func() error { notified.Add(1); return nil }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	status := func() *Status {
		qctx, qcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer qcancel()
		resp, err := Query(qctx, cfg.SocketPath, Request{Op: OpStatus})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Status
	}
	lab.WaitFor(t, 10*time.Second, "ready", func() bool { return notified.Load() == 1 })
	st := status()
	if st.Error != "" || len(st.Links) != 2 || strings.Join(st.Links[0].Zones, ",") != "cell-1" {
		t.Fatalf("status %+v", st)
	}
	if a := linkAddrs(t, gate.Handle, "eth1"); len(a) != 1 || a[0] != "10.77.0.1/24 eth1:nc" {
		t.Errorf("eth1 %q", a)
	}

	// A zone on an interface that is not a downlink: refused, nothing
	// changes.
	storePolicy(t, pdir, "zones:\n  - {name: cell-9, owner: ot, mode: enforce, interface: eth9, subnet: 10.79.0.0/24, gate_address: 10.79.0.1}\n")
	syncs := st.Syncs
	svc.Reload()
	lab.WaitFor(t, 10*time.Second, "the reload", func() bool { return status().Syncs > syncs })
	st = status()
	if !strings.Contains(st.Error, `zone "cell-9": interface eth9 is not a downlink of this gate (downlinks: eth1, eth2); nothing changed`) {
		t.Errorf("status error %q", st.Error)
	}
	if a := linkAddrs(t, gate.Handle, "eth1"); len(a) != 1 || a[0] != "10.77.0.1/24 eth1:nc" {
		t.Errorf("eth1 changed by a refused policy: %q", a)
	}

	// A good edit: a second zone and its assets.
	storePolicy(t, pdir, `zones:
  - {name: cell-1, owner: ot, mode: enforce, interface: eth1, subnet: 10.77.0.0/24, gate_address: 10.77.0.1}
  - {name: cell-2, owner: ot, mode: monitor, interface: eth2, subnet: 10.78.0.0/24, gate_address: 10.78.0.1}
assets:
  - {name: rtu-1, zone: cell-2, address: 10.78.0.20, services: [{protocol: modbus}]}
`)
	syncs = status().Syncs
	svc.Reload()
	lab.WaitFor(t, 10*time.Second, "the reload", func() bool { return status().Syncs > syncs })
	st = status()
	if st.Error != "" || len(st.Assets) != 1 || st.Assets[0].Asset != "rtu-1" || st.Assets[0].Link != "eth2" || st.Assets[0].IP != netip.MustParseAddr("10.78.0.20") {
		t.Errorf("status after the edit: %+v", st)
	}
	if notified.Load() != 1 {
		t.Errorf("ready notified %d times", notified.Load())
	}
}
