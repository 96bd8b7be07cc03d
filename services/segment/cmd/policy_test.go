package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/services/segment"
	"github.com/otgate/otgate/services/segment/baseline"
	"github.com/otgate/otgate/services/segment/internal/nslab"
	"github.com/otgate/otgate/site"
)

const policySite = `site: lab
zones:
  - name: cell-a
    owner: ot@plant.example
    mode: enforce
    interface: dn0
    subnet: 10.20.0.0/24
    gate_address: 10.20.0.1
assets:
  - name: plc-1
    zone: cell-a
    address: 10.20.0.10
    services:
      - protocol: PROTO
`

// storePolicy compiles a site file and stores it as dir/applied.cbor, as
// `otgate site apply` does.
func storePolicy(t *testing.T, dir, proto string) {
	t.Helper()
	src := []byte(strings.ReplaceAll(policySite, "PROTO", proto))
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

// With -policy the service enforces the applied site policy on the boot
// config's baseline, follows a changed policy file, and keeps the last good
// ruleset when the file turns bad.
func TestServiceFollowsAppliedPolicy(t *testing.T) {
	l := nslab.New(t)
	bin := buildBinary(t, ".", "otgate-segment")
	l.Plant.Listen(t, nslab.Asset1+":502")
	l.Plant.Listen(t, nslab.Asset1+":8080")
	dir := t.TempDir()
	boot, err := bootcfg.Marshal(&bootcfg.Config{Uplink: nslab.Uplink, Downlinks: []string{nslab.Downlink, nslab.Downlink2}})
	if err != nil {
		t.Fatal(err)
	}
	bootPath := filepath.Join(dir, "boot.cbor")
	if err := os.WriteFile(bootPath, boot, 0o644); err != nil {
		t.Fatal(err)
	}
	policyDir := filepath.Join(dir, "policy")
	storePolicy(t, policyDir, "modbus")
	policy := filepath.Join(policyDir, site.AppliedFile)
	sock := filepath.Join(dir, "segment.sock")
	svc := start(t, l, bin, filepath.Join(dir, "unused.cbor"), sock, "1h", "-policy", policy, "-boot", bootPath, "-poll", "100ms")
	if !strings.Contains(svc.out.String(), "segment: enforcing policy "+policy+" from site.yaml") {
		t.Fatalf("no policy line:\n%s", svc.out)
	}
	// The status names the applied policy in force by its site file's
	// digest (what `otgate site apply` waits for).
	policySHA := func() [32]byte {
		t.Helper()
		rsp, err := segment.Query(sock, segment.OpStatus)
		if err != nil || rsp.Status == nil {
			t.Fatalf("status: %v %+v", err, rsp)
		}
		return rsp.Status.PolicySHA256
	}
	storedSHA := func() [32]byte {
		t.Helper()
		a, err := site.LoadApplied(policy)
		if err != nil {
			t.Fatal(err)
		}
		return a.SourceSHA256
	}
	first := storedSHA()
	if got := policySHA(); got != first {
		t.Fatalf("status names policy %x, want the stored one %x", got, first)
	}

	proxy := nslab.Identity{UID: baseline.ProxyUID, Mark: baseline.ProxyMark}
	if ok, err := l.Gate.Reach(nslab.Asset1+":502", proxy, 10*time.Second); !ok || err != nil {
		t.Fatalf("proxy to plc-1 modbus: reachable=%v err=%v\n%s", ok, err, svc.out)
	}
	if ok, _ := l.Gate.Reach(nslab.Asset1+":502", root, 1500*time.Millisecond); ok {
		t.Fatal("root on the gate reaches plc-1: only the proxy may")
	}
	if ok, _ := l.Client.Reach(nslab.Asset1+":502", root, 1500*time.Millisecond); ok {
		t.Fatal("the uplink side reaches plc-1 through the gate")
	}

	// The asset now speaks tcp/8080 only: the file changes, the ruleset follows.
	storePolicy(t, policyDir, "tcp\n        port: 8080")
	waitFor(t, "reload", func() bool { return strings.Contains(svc.out.String(), "segment: policy file changed: now enforcing") })
	second := storedSHA()
	if got := policySHA(); got != second || got == first {
		t.Fatalf("status names policy %x after the change, want %x (the first was %x)", got, second, first)
	}
	if ok, _ := l.Gate.Reach(nslab.Asset1+":502", proxy, 1500*time.Millisecond); ok {
		t.Fatal("proxy still reaches tcp/502 after the policy dropped it")
	}
	if ok, err := l.Gate.Reach(nslab.Asset1+":8080", proxy, 10*time.Second); !ok || err != nil {
		t.Fatalf("proxy to plc-1 tcp/8080: reachable=%v err=%v", ok, err)
	}

	// A corrupt policy changes nothing.
	if err := os.WriteFile(policy+".tmp", []byte("not a policy"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(policy+".tmp", policy); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "refusal", func() bool {
		return strings.Contains(svc.out.String(), "corrupt applied policy") && strings.Contains(svc.out.String(), "nothing changed, the previous ruleset stays")
	})
	if ok, err := l.Gate.Reach(nslab.Asset1+":8080", proxy, 10*time.Second); !ok || err != nil {
		t.Fatalf("proxy to plc-1 tcp/8080 after a corrupt policy: reachable=%v err=%v", ok, err)
	}
	if got := policySHA(); got != second {
		t.Fatalf("status names policy %x after a corrupt file, want the one still in force %x", got, second)
	}
	if ok, _ := l.Gate.Reach(nslab.Asset1+":502", root, 1500*time.Millisecond); ok {
		t.Fatal("root reaches plc-1 after a corrupt policy")
	}
}
