package overlay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/otgate/otgate/site"
)

const policyYAML = `site: test-plant
zones:
  - {name: cell-1, owner: ot, mode: enforce, interface: eth1, subnet: 10.10.1.0/24, gate_address: 10.10.1.1}
  - {name: cell-2, owner: ot, mode: monitor, interface: eth1, vlan: 12, subnet: 10.10.2.0/24, gate_address: 10.10.2.1}
overlay:
  quarantine: 1h
assets:
%s`

func asset(name, zone, addr, extra string) string {
	return fmt.Sprintf("  - {name: %s, zone: %s, address: %s, services: [{protocol: modbus}]%s}\n", name, zone, addr, extra)
}

// storePolicy compiles a site file and stores it as the applied policy.
func storePolicy(t *testing.T, dir, assets string) {
	t.Helper()
	src := []byte(fmt.Sprintf(policyYAML, assets))
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

type running struct {
	once   sync.Once
	svc    *Service
	cancel context.CancelFunc
	done   chan error
	reload chan struct{}
}

func start(t *testing.T, h *netlink.Handle, kind LinkKind, dir string) *running {
	t.Helper()
	return startWith(t, h, kind, dir, nil)
}

// startWith is start with the service adjusted by tune (if not nil)
// before it runs.
func startWith(t *testing.T, h *netlink.Handle, kind LinkKind, dir string, tune func(*Service)) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{
		svc: &Service{
			PolicyPath: filepath.Join(dir, "policy", site.AppliedFile),
			StatePath:  filepath.Join(dir, "overlay", "alloc.cbor"),
			SocketPath: filepath.Join(dir, "run", "overlay.sock"),
			LinkKind:   kind,
			Handle:     h,
			NS:         nsOf(t, h),
			Poll:       20 * time.Millisecond,
			Repair:     time.Hour,
			Logf:       t.Logf,
		},
		cancel: cancel,
		done:   make(chan error, 1),
		reload: make(chan struct{}, 1),
	}
	if tune != nil {
		tune(r.svc)
	}
	go func() { r.done <- r.svc.Run(ctx, r.reload) }()
	t.Cleanup(r.stop)
	return r
}

func (r *running) stop() {
	r.once.Do(func() {
		r.cancel()
		if err := <-r.done; err != nil {
			panic(fmt.Sprintf("service Run: %v", err))
		}
	})
}

// waitSnapshot polls the socket until cond holds (generous timeout for a
// loaded machine).
func waitSnapshot(t *testing.T, sock string, what string, cond func(*Snapshot) bool) *Snapshot {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last *Snapshot
	var lastErr error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, err := FetchSnapshot(ctx, sock)
		cancel()
		if err == nil && cond(s) {
			return s
		}
		last, lastErr = s, err
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last snapshot %+v, err %v", what, last, lastErr)
	return nil
}

func addrOfAsset(s *Snapshot, asset string) string {
	for _, e := range s.Entries {
		if e.Asset == asset {
			return e.Addr.String()
		}
	}
	return ""
}

// ownedOn lists the overlay-labelled addresses on the overlay link.
func ownedOn(t *testing.T, h *netlink.Handle) []string {
	var out []string
	for _, a := range addrsOn(t, h, DefaultLink) {
		if a.label == DefaultLink+labelSuffix {
			out = append(out, strings.TrimSuffix(a.addr, "/32"))
		}
	}
	return out
}

func TestServiceStory(t *testing.T) {
	h := newNetNS(t)
	kind := linkKind(t, h)
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "overlay.sock")
	policyDir := filepath.Join(dir, "policy")

	// No policy yet: the service runs, serves, and changes nothing.
	r := start(t, h, kind, dir)
	s := waitSnapshot(t, sock, "first sync", func(s *Snapshot) bool { return s.Syncs >= 1 })
	if !strings.Contains(s.Error, "no applied policy") || len(s.Entries) != 0 {
		t.Fatalf("without policy: %+v", s)
	}

	// A policy appears: picked up by the file watch.
	storePolicy(t, policyDir, asset("plc-1", "cell-1", "10.10.1.10", "")+
		asset("plc-2", "cell-1", "10.10.1.11", "")+
		asset("hmi-1", "cell-2", "10.10.2.10", ", overlay: 100.64.200.7"))
	s = waitSnapshot(t, sock, "three assets", func(s *Snapshot) bool { return len(s.Entries) == 3 && s.Error == "" })
	want := map[string]string{"plc-1": "100.64.0.2", "plc-2": "100.64.0.3", "hmi-1": "100.64.200.7"}
	for a, w := range want {
		if got := addrOfAsset(s, a); got != w {
			t.Errorf("%s = %s, want %s", a, got, w)
		}
	}
	if len(s.Warnings) == 0 || !strings.Contains(strings.Join(s.Warnings, "\n"), "Tailscale 100.64.0.0/10") {
		t.Errorf("no CGNAT warning for 100.64.0.0/16: %q", s.Warnings)
	}
	if got := fmt.Sprint(ownedOn(t, h)); got != "[100.64.0.1 100.64.0.2 100.64.0.3 100.64.200.7]" {
		t.Errorf("link carries %s", got)
	}

	// An edit: plc-2 goes, rtu-1 comes (SIGHUP path). plc-2's address is
	// quarantined, not reused by rtu-1.
	storePolicy(t, policyDir, asset("plc-1", "cell-1", "10.10.1.10", "")+
		asset("rtu-1", "cell-1", "10.10.1.12", "")+
		asset("hmi-1", "cell-2", "10.10.2.10", ", overlay: 100.64.200.7"))
	r.reload <- struct{}{}
	s = waitSnapshot(t, sock, "rtu-1", func(s *Snapshot) bool { return addrOfAsset(s, "rtu-1") != "" })
	if addrOfAsset(s, "rtu-1") != "100.64.0.4" || addrOfAsset(s, "plc-1") != "100.64.0.2" {
		t.Errorf("after edit: %+v", s.Entries)
	}
	if len(s.Quarantined) != 1 || s.Quarantined[0].Addr.String() != "100.64.0.3" {
		t.Errorf("quarantine: %+v", s.Quarantined)
	}
	if got := fmt.Sprint(ownedOn(t, h)); got != "[100.64.0.1 100.64.0.2 100.64.0.4 100.64.200.7]" {
		t.Errorf("link carries %s", got)
	}

	// A corrupt policy file changes nothing and is reported.
	good, err := os.ReadFile(r.svc.PolicyPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.svc.PolicyPath, good[:len(good)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	s = waitSnapshot(t, sock, "corrupt policy error", func(s *Snapshot) bool { return strings.Contains(s.Error, "corrupt applied policy") })
	if len(s.Entries) != 3 || addrOfAsset(s, "rtu-1") != "100.64.0.4" {
		t.Errorf("corrupt policy changed the table: %+v", s.Entries)
	}
	if got := fmt.Sprint(ownedOn(t, h)); got != "[100.64.0.1 100.64.0.2 100.64.0.4 100.64.200.7]" {
		t.Errorf("corrupt policy changed the link: %s", got)
	}

	// An uplink inside the overlay prefix is a collision: refused, nothing changes.
	if err := os.WriteFile(r.svc.PolicyPath, good, 0o600); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, sock, "recovery", func(s *Snapshot) bool { return s.Error == "" })
	addLink(t, h, kind, "uplink0", "100.64.9.1/24")
	storePolicy(t, policyDir, asset("plc-1", "cell-1", "10.10.1.10", ""))
	r.reload <- struct{}{}
	s = waitSnapshot(t, sock, "collision error", func(s *Snapshot) bool {
		return strings.Contains(s.Error, "overlay prefix collision: 100.64.0.0/16 overlaps interface uplink0 100.64.9.0/24")
	})
	if len(s.Entries) != 3 {
		t.Errorf("a colliding policy changed the table: %+v", s.Entries)
	}
	l, _ := h.LinkByName("uplink0")
	if err := h.LinkDel(l); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.svc.PolicyPath, good, 0o600); err != nil {
		t.Fatal(err)
	}
	before := waitSnapshot(t, sock, "recovery", func(s *Snapshot) bool { return s.Error == "" && len(s.Entries) == 3 })

	// Restart: a new process converges to the same table and addresses.
	r.stop()
	r2 := start(t, h, kind, dir)
	after := waitSnapshot(t, sock, "restart", func(s *Snapshot) bool { return s.Syncs >= 1 && s.Error == "" })
	if fmt.Sprint(after.Entries, after.Quarantined) != fmt.Sprint(before.Entries, before.Quarantined) {
		t.Errorf("restart changed the table:\n%+v\n%+v", before.Entries, after.Entries)
	}
	if got := fmt.Sprint(ownedOn(t, h)); got != "[100.64.0.1 100.64.0.2 100.64.0.4 100.64.200.7]" {
		t.Errorf("after restart link carries %s", got)
	}
	_ = r2
}
