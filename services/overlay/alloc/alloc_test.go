package alloc

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func open(t testing.TB, path string) *Allocator {
	t.Helper()
	a, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func addrOf(t testing.TB, a *Allocator, asset string) netip.Addr {
	t.Helper()
	for _, e := range a.Table() {
		if e.Asset == asset {
			return e.Addr
		}
	}
	t.Fatalf("asset %q has no address; table: %v", asset, a.Table())
	return netip.Addr{}
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestAllocateBasics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alloc.cbor")
	a := open(t, path)
	cfg := Config{}
	reqs := []Request{
		{Asset: "plc-2", Zone: "cell-1"},
		{Asset: "plc-1", Zone: "cell-1"},
		{Asset: "hmi-1", Zone: "cell-2"},
		{Asset: "rtu-1", Zone: "cell-2", Pinned: ip("100.64.1.5")},
	}
	diff, err := a.Apply(cfg, reqs, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(diff.Added) != 4 {
		t.Errorf("diff.Added = %v", diff.Added)
	}
	// Pools carved in zone-name order: cell-1 gets 100.64.0.0/24 (whose .0
	// and the gate .1 are reserved), cell-2 100.64.1.0/24.
	want := map[string]string{"hmi-1": "100.64.1.1", "plc-1": "100.64.0.2", "plc-2": "100.64.0.3", "rtu-1": "100.64.1.5"}
	for asset, w := range want {
		if got := addrOf(t, a, asset); got != ip(w) {
			t.Errorf("%s = %s, want %s", asset, got, w)
		}
	}
	if p := a.Pools(); len(p) != 2 || p[0].Prefix.String() != "100.64.0.0/24" || p[1].Prefix.String() != "100.64.1.0/24" {
		t.Errorf("pools = %v", p)
	}
	// Reload gives the same table.
	b := open(t, path)
	if fmt.Sprint(b.Table()) != fmt.Sprint(a.Table()) {
		t.Errorf("reload differs:\n%v\n%v", b.Table(), a.Table())
	}
}

func TestReleaseQuarantineAndReturn(t *testing.T) {
	a := open(t, filepath.Join(t.TempDir(), "alloc.cbor"))
	cfg := Config{Quarantine: time.Hour, PoolSize: 4} // /30: one usable address (.1 is the gate in the first pool)
	cfg.Pools = map[string]PoolSpec{"z": {Prefix: netip.MustParsePrefix("100.64.9.0/30")}}
	must := func(reqs []Request, now time.Time) {
		t.Helper()
		if _, err := a.Apply(cfg, reqs, now); err != nil {
			t.Fatal(err)
		}
	}
	must([]Request{{Asset: "a", Zone: "z"}, {Asset: "b", Zone: "z"}}, t0)
	if addrOf(t, a, "a") != ip("100.64.9.1") || addrOf(t, a, "b") != ip("100.64.9.2") {
		t.Fatalf("table %v", a.Table())
	}
	must([]Request{{Asset: "b", Zone: "z"}}, t0.Add(time.Minute))
	if q := a.Quarantined(); len(q) != 1 || q[0].Addr != ip("100.64.9.1") || q[0].Asset != "a" {
		t.Fatalf("quarantine = %v", q)
	}
	// During the quarantine a new asset cannot have the address: the pool is exhausted.
	_, err := a.Apply(cfg, []Request{{Asset: "b", Zone: "z"}, {Asset: "c", Zone: "z"}}, t0.Add(30*time.Minute))
	if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), `zone "z": pool 100.64.9.0/30 has no free address for asset "c" (2 usable, 2 taken of which 1 quarantined)`) {
		t.Fatalf("err = %v, want a named exhaustion", err)
	}
	if len(a.Table()) != 1 {
		t.Fatal("a failed Apply changed the table")
	}
	// The same asset coming back takes its own address back.
	must([]Request{{Asset: "a", Zone: "z"}, {Asset: "b", Zone: "z"}}, t0.Add(30*time.Minute))
	if addrOf(t, a, "a") != ip("100.64.9.1") || len(a.Quarantined()) != 0 {
		t.Fatalf("a did not get its address back: %v %v", a.Table(), a.Quarantined())
	}
	// After the quarantine ends, the address goes to someone else.
	must([]Request{{Asset: "b", Zone: "z"}}, t0.Add(40*time.Minute))
	must([]Request{{Asset: "b", Zone: "z"}, {Asset: "c", Zone: "z"}}, t0.Add(40*time.Minute+time.Hour))
	if addrOf(t, a, "c") != ip("100.64.9.1") {
		t.Fatalf("c = %v", addrOf(t, a, "c"))
	}
}

func TestPinsAndConflicts(t *testing.T) {
	a := open(t, filepath.Join(t.TempDir(), "alloc.cbor"))
	cfg := Config{}
	if _, err := a.Apply(cfg, []Request{{Asset: "a", Zone: "z"}, {Asset: "b", Zone: "z"}}, t0); err != nil {
		t.Fatal(err)
	}
	before := fmt.Sprint(a.Table())
	cases := []struct {
		name string
		reqs []Request
		want string
	}{
		{"pin on another asset's address", []Request{{Asset: "a", Zone: "z"}, {Asset: "b", Zone: "z"}, {Asset: "c", Zone: "z", Pinned: ip("100.64.0.2")}},
			`asset "c": pinned address 100.64.0.2 is taken (asset a)`},
		{"pin on the gate", []Request{{Asset: "c", Zone: "z", Pinned: ip("100.64.0.1")}}, `pinned address 100.64.0.1 is the gate's own address`},
		{"pin outside prefix", []Request{{Asset: "c", Zone: "z", Pinned: ip("10.0.0.1")}}, `pinned address 10.0.0.1 is not a usable address of the overlay prefix 100.64.0.0/16`},
		{"duplicate request", []Request{{Asset: "c", Zone: "z"}, {Asset: "c", Zone: "y"}}, `asset "c" requested twice`},
		{"released address pinned by another", []Request{{Asset: "b", Zone: "z"}, {Asset: "c", Zone: "z", Pinned: ip("100.64.0.2")}},
			`asset "c": pinned address 100.64.0.2 is taken (quarantined until`},
	}
	for _, tc := range cases {
		_, err := a.Apply(cfg, tc.reqs, t0)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
		if fmt.Sprint(a.Table()) != before {
			t.Fatalf("%s: a refused Apply changed the table", tc.name)
		}
	}
	// Changing a pin moves the asset and quarantines the old address.
	diff, err := a.Apply(cfg, []Request{{Asset: "a", Zone: "z", Pinned: ip("100.64.77.7")}, {Asset: "b", Zone: "z"}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if addrOf(t, a, "a") != ip("100.64.77.7") || len(diff.Moved) != 1 || len(diff.Released) != 1 || diff.Released[0].Addr != ip("100.64.0.2") {
		t.Fatalf("move: table %v diff %+v", a.Table(), diff)
	}
	// Dropping the pin keeps the address (never silently renumbered).
	if _, err := a.Apply(cfg, []Request{{Asset: "a", Zone: "z"}, {Asset: "b", Zone: "z"}}, t0); err != nil {
		t.Fatal(err)
	}
	if addrOf(t, a, "a") != ip("100.64.77.7") {
		t.Fatal("unpinning renumbered the asset")
	}
	// A prefix change while assets exist is refused.
	if _, err := a.Apply(Config{Prefix: netip.MustParsePrefix("100.65.0.0/16")}, []Request{{Asset: "a", Zone: "z"}}, t0); !errors.Is(err, ErrPrefixChanged) {
		t.Fatalf("prefix change: err = %v", err)
	}
}

func TestPoolsStableWhenZonesAreAdded(t *testing.T) {
	a := open(t, filepath.Join(t.TempDir(), "alloc.cbor"))
	if _, err := a.Apply(Config{}, []Request{{Asset: "x", Zone: "m-zone"}}, t0); err != nil {
		t.Fatal(err)
	}
	first := a.Pools()[0]
	// "a-zone" sorts first, but m-zone keeps the pool it already has.
	if _, err := a.Apply(Config{}, []Request{{Asset: "x", Zone: "m-zone"}, {Asset: "y", Zone: "a-zone"}}, t0); err != nil {
		t.Fatal(err)
	}
	for _, p := range a.Pools() {
		if p.Zone == "m-zone" && p != first {
			t.Fatalf("m-zone pool moved from %v to %v", first, p)
		}
	}
	if !a.Pools()[0].Prefix.Contains(addrOf(t, a, "y")) {
		t.Fatalf("y %v outside its pool %v", addrOf(t, a, "y"), a.Pools())
	}
}

func TestNoRoomForPool(t *testing.T) {
	a := open(t, filepath.Join(t.TempDir(), "alloc.cbor"))
	cfg := Config{Prefix: netip.MustParsePrefix("100.64.0.0/24"), PoolSize: 128}
	_, err := a.Apply(cfg, []Request{{Asset: "a", Zone: "z1"}, {Asset: "b", Zone: "z2"}, {Asset: "c", Zone: "z3"}}, t0)
	if !errors.Is(err, ErrNoRoom) || !strings.Contains(err.Error(), `zone "z3" needs a pool of 128 addresses`) {
		t.Fatalf("err = %v", err)
	}
}

func TestCollisions(t *testing.T) {
	p := DefaultPrefix
	warns, err := CheckCollisions(p, []Network{
		{Name: "uplink eth0", Prefix: netip.MustParsePrefix("100.64.0.0/24")},
		{Name: "zone cell-1", Prefix: netip.MustParsePrefix("10.10.1.0/24")},
	})
	if !errors.Is(err, ErrCollision) || !strings.Contains(err.Error(), "100.64.0.0/16 overlaps uplink eth0 100.64.0.0/24") || strings.Contains(err.Error(), "cell-1") {
		t.Errorf("err = %v", err)
	}
	var products []string
	for _, w := range warns {
		products = append(products, w.Product+" "+w.Range.String())
	}
	got := strings.Join(products, "; ")
	for _, want := range []string{"Tailscale 100.64.0.0/10", "Teleport VNet 100.64.0.0/10", "Cloudflare One 100.64.0.0/12"} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings %q lack %q", got, want)
		}
	}
	if strings.Contains(got, "100.96.0.0/12") || strings.Contains(got, "100.100.100.100") {
		t.Errorf("warned about a range the prefix does not overlap: %q", got)
	}
	warns, err = CheckCollisions(netip.MustParsePrefix("100.100.0.0/16"), nil)
	if err != nil || len(warns) == 0 || !strings.Contains(fmt.Sprint(warns), "quad100") {
		t.Errorf("100.100.0.0/16: %v %v", warns, err)
	}
	if warns, _ := CheckCollisions(netip.MustParsePrefix("198.18.0.0/16"), nil); len(warns) != 0 {
		t.Errorf("198.18.0.0/16 warned: %v", warns)
	}
}

func TestUnchangedApplyDoesNotRewrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alloc.cbor")
	a := open(t, path)
	reqs := []Request{{Asset: "a", Zone: "z"}}
	if _, err := a.Apply(Config{}, reqs, t0); err != nil {
		t.Fatal(err)
	}
	st1, _ := os.Stat(path)
	if _, err := open(t, path).Apply(Config{}, reqs, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(path)
	if !os.SameFile(st1, st2) {
		t.Error("an Apply that changed nothing rewrote the state file")
	}
}
