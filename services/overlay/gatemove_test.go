package overlay

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/otgate/otgate/site"
)

// storeGatePolicy stores a policy whose overlay gate address is gate.
func storeGatePolicy(t *testing.T, dir, gate, assets string) {
	t.Helper()
	src := []byte(fmt.Sprintf(`site: test-plant
zones:
  - {name: cell-1, owner: ot, mode: enforce, interface: eth1, subnet: 10.10.1.0/24, gate_address: 10.10.1.1}
overlay:
  gate: %s
  quarantine: 1h
assets:
%s`, gate, assets))
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

// TestGateMoveQuarantinesOldAddress: the site file moves the gate's own
// overlay address. The old one leaves the interface at once, and is
// quarantined like a released endpoint: a client still aiming at the old
// gate address must not reach an asset's endpoint. It was handed to the
// next new asset in the same sync (plc-2 got 100.64.0.1, the gate's
// address a moment before).
func TestGateMoveQuarantinesOldAddress(t *testing.T) {
	h := newNetNS(t)
	kind := linkKind(t, h)
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "overlay.sock")
	policyDir := filepath.Join(dir, "policy")

	storeGatePolicy(t, policyDir, "100.64.0.1", asset("plc-1", "cell-1", "10.10.1.10", ""))
	r := start(t, h, kind, dir)
	waitSnapshot(t, sock, "plc-1", func(s *Snapshot) bool { return addrOfAsset(s, "plc-1") != "" && s.Error == "" })
	if got := fmt.Sprint(ownedOn(t, h)); got != "[100.64.0.1 100.64.0.2]" {
		t.Fatalf("link carries %s, want the gate 100.64.0.1 and plc-1 100.64.0.2", got)
	}

	storeGatePolicy(t, policyDir, "100.64.0.200", asset("plc-1", "cell-1", "10.10.1.10", "")+
		asset("plc-2", "cell-1", "10.10.1.11", ""))
	r.reload <- struct{}{}
	s := waitSnapshot(t, sock, "plc-2", func(s *Snapshot) bool { return addrOfAsset(s, "plc-2") != "" || s.Error != "" })
	if s.Error != "" {
		t.Fatalf("gate move refused: %s", s.Error)
	}
	if got := addrOfAsset(s, "plc-2"); got == "100.64.0.1" {
		t.Errorf("plc-2 got %s, the gate's address until this very sync", got)
	}
	if got := fmt.Sprint(ownedOn(t, h)); got != "[100.64.0.2 100.64.0.200 100.64.0.3]" {
		t.Errorf("link carries %s, want plc-1 100.64.0.2, the new gate 100.64.0.200, plc-2 100.64.0.3", got)
	}
	if q := s.Quarantined; len(q) != 1 || q[0].Addr.String() != "100.64.0.1" {
		t.Errorf("quarantine: %+v, want the old gate address 100.64.0.1", q)
	}
}
