package image

import (
	"net/netip"
	"path"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/board"
	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/site"
)

func row(t *testing.T, name string) bootcfg.Service {
	t.Helper()
	for _, r := range ProductionServices {
		if r.Service.Name == name {
			return r.Service
		}
	}
	t.Fatalf("no production row %q", name)
	return bootcfg.Service{}
}

func arg(s bootcfg.Service, flag string) string {
	for i, a := range s.Args {
		if a == flag && i+1 < len(s.Args) {
			return s.Args[i+1]
		}
	}
	return ""
}

// The rows name the interfaces every board gives the uplink and downlink
// roles, and the default site's zones sit on those downlinks.
func TestProductionRowsMatchBoardsAndDefaultSite(t *testing.T) {
	netconf := row(t, "netconf")
	up := arg(netconf, "-uplink")
	down, _, _ := strings.Cut(arg(netconf, "-downlink"), "=")
	for _, name := range board.Names() {
		b, err := board.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		cfg := bootConfig(b, nil, nil, ProductionServices, false, false)
		if cfg.Uplink != up || len(cfg.Downlinks) != 1 || cfg.Downlinks[0] != down {
			t.Errorf("board %s: uplink %s downlinks %v; the netconf row says %s and %s", name, cfg.Uplink, cfg.Downlinks, up, down)
		}
		if err := cfg.Validate(nil); err != nil {
			t.Errorf("board %s: %v", name, err)
		}
	}
	s, _, err := site.Load("../"+rootfsDir+"/"+defaultSiteFile, site.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, z := range s.Zones {
		if z.Interface != down {
			t.Errorf("default site zone %s on %s, the gate's downlink is %s", z.Name, z.Interface, down)
		}
	}
	// The gate's OT-side addresses come from the site policy, not the row:
	// the default site puts the gate on 10.77.0.1/24 (the lab's
	// GateDownlinkIP, qemu/lab), and the row names interfaces only.
	if len(s.Zones) != 1 || s.Zones[0].GatePrefix() != netip.MustParsePrefix("10.77.0.1/24") {
		t.Errorf("default site zones %+v: want one zone with the gate on 10.77.0.1/24", s.Zones)
	}
	for i, a := range netconf.Args {
		if a == "-address" || (a == "-downlink" && strings.Contains(netconf.Args[i+1], "=")) {
			t.Errorf("netconf row fixes an OT-side address (%s %s): the site policy names them", a, netconf.Args[i+1])
		}
	}
	// Every row that reads the policy reads the file "policy" writes.
	for _, name := range []string{"segment", "overlay", "netconf"} {
		r := row(t, name)
		if got := arg(r, "-policy"); got != appliedPolicy || !reflect.DeepEqual(r.DependsOn, []string{"policy"}) {
			t.Errorf("%s: -policy %q, depends on %v", name, got, r.DependsOn)
		}
	}
	if p := row(t, "policy"); arg(p, "-dir")+"/"+site.AppliedFile != appliedPolicy || p.Args[len(p.Args)-1] != defaultPolicyPath {
		t.Errorf("policy row %v", p.Args)
	}
	if !row(t, "segment").Critical {
		t.Error("segment is not critical")
	}
}

// The image's default site is the demo plant of site/testdata.
func TestDefaultSiteIsTheDemoPlant(t *testing.T) {
	now := time.Now()
	img, _, err := site.Load("../"+rootfsDir+"/"+defaultSiteFile, site.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	demo, _, err := site.Load("../site/testdata/example-site.yaml", site.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(img, demo) {
		t.Error("rootfs/etc/otgate/site.yaml differs from site/testdata/example-site.yaml")
	}
}

// The builder compiles the default site; a broken one stops the build
// with the loader's file:line:field error.
func TestAddDefaultPolicy(t *testing.T) {
	tree := newFileTree()
	ok, err := addDefaultPolicy(tree, "..", time.Now())
	if err != nil || !ok || !tree.exists(defaultPolicyPath) {
		t.Fatalf("addDefaultPolicy: %v, %v", ok, err)
	}
	if ok, err := addDefaultPolicy(newFileTree(), t.TempDir(), time.Now()); ok || err != nil {
		t.Fatalf("no default site: %v, %v", ok, err)
	}
}

// The identity row seals to the board's PCRs: -pcrs is added per board
// (and only when the board names some), the shared table is not changed,
// and init's configuration carries the same list.
func TestIdentityRowGetsBoardPCRs(t *testing.T) {
	before := append([]string(nil), row(t, "identity").Args...)
	for _, c := range []struct {
		board string
		want  string
	}{{"generic-x86_64", "0,2,4,7"}, {"qemu-x86_64", ""}, {"qemu-aarch64", ""}} {
		b, err := board.Lookup(c.board)
		if err != nil {
			t.Fatal(err)
		}
		cfg := bootConfig(b, nil, nil, ProductionServices, false, false)
		var id bootcfg.Service
		for _, s := range cfg.Services {
			if s.Name == "identity" {
				id = s
			}
		}
		if got := arg(id, "-pcrs"); got != c.want {
			t.Errorf("board %s: identity -pcrs %q, want %q (args %v)", c.board, got, c.want, id.Args)
		}
		if !reflect.DeepEqual(cfg.TPMPCRs, b.TPM.PCRs) && (len(cfg.TPMPCRs) != 0 || len(b.TPM.PCRs) != 0) {
			t.Errorf("board %s: boot config TPM PCRs %v, board %v", c.board, cfg.TPMPCRs, b.TPM.PCRs)
		}
	}
	if after := row(t, "identity").Args; !reflect.DeepEqual(before, after) {
		t.Errorf("the shared identity row changed: %v -> %v", before, after)
	}
	bad := bootConfig(&board.Board{Name: "x", TPM: board.TPM{PCRs: []int{7, 24}}}, nil, nil, ProductionServices, false, false)
	if err := bad.Validate(nil); err == nil || !strings.Contains(err.Error(), "PCR 24 is out of range") {
		t.Errorf("PCR 24: %v", err)
	}
}

// The time service keeps its clock floor on persistent storage, in a
// directory init gives it (root's, like the service): a gate with a dead
// RTC battery then boots at the last known-good time.
func TestTimesyncRowKeepsTheClockFloor(t *testing.T) {
	r := row(t, "timesync")
	f := arg(r, "-clock-file")
	if f == "" || !strings.HasPrefix(f, "/perm/") {
		t.Fatalf("timesync row %v: no -clock-file on /perm", r.Args)
	}
	if !slices.Contains(r.OwnedDirs, path.Dir(f)) || r.UID != 0 {
		t.Errorf("timesync row: clock file %s, owned directories %v, uid %d: init must create its directory for root", f, r.OwnedDirs, r.UID)
	}
}
