package netconf

import (
	"net/netip"
	"testing"
	"time"
)

func kinds(r *Ring) []string {
	evs, _ := r.Since(0)
	var out []string
	for _, e := range evs {
		out = append(out, string(e.Kind)+" "+e.Asset+" "+e.IP+" "+e.OldMAC+">"+e.MAC)
	}
	return out
}

func TestInventory(t *testing.T) {
	r := NewRing(0, nil)
	inv := NewInventory(time.Minute, r)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	inv.SetAssets([]DeclaredAsset{
		{Name: "plc-1", Link: "eth1", IP: netip.MustParseAddr("10.0.0.10"), MAC: "02:00:00:00:00:10"},
		{Name: "hmi", Link: "eth1", IP: netip.MustParseAddr("10.0.0.20")},
	}, t0)
	ip := netip.MustParseAddr
	// A stranger answers for plc-1 from the start: declared MAC differs.
	inv.Observe("eth1", ip("10.0.0.10"), "02:00:00:00:00:66", t0.Add(time.Second), "ARP")
	// The hmi is seen, then answers with another MAC.
	inv.Observe("eth1", ip("10.0.0.20"), "02:00:00:00:00:20", t0.Add(time.Second), "ARP")
	inv.Observe("eth1", ip("10.0.0.20"), "02:00:00:00:00:20", t0.Add(2*time.Second), "ARP") // no new event
	inv.Observe("eth1", ip("10.0.0.20"), "02:00:00:00:00:21", t0.Add(3*time.Second), "ARP")
	// plc-1's MAC turns up with an undeclared address.
	inv.Observe("eth1", ip("10.0.0.99"), "02:00:00:00:00:10", t0.Add(4*time.Second), "ARP")
	// plc-1's address on the wrong downlink.
	inv.Observe("eth2", ip("10.0.0.10"), "02:00:00:00:00:10", t0.Add(4*time.Second), "ARP")
	// Nonsense is ignored.
	inv.Observe("eth1", ip("0.0.0.0"), "02:00:00:00:00:77", t0, "ARP")

	want := []string{
		"mac-changed plc-1 10.0.0.10 02:00:00:00:00:10>02:00:00:00:00:66",
		"present plc-1 10.0.0.10 >02:00:00:00:00:66",
		"present hmi 10.0.0.20 >02:00:00:00:00:20",
		"mac-changed hmi 10.0.0.20 02:00:00:00:00:20>02:00:00:00:00:21",
		"unknown-device  10.0.0.99 >02:00:00:00:00:10",
		"unknown-device  10.0.0.10 >02:00:00:00:00:10",
	}
	got := kinds(r)
	if len(got) != len(want) {
		t.Fatalf("events\n%q\nwant\n%q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d: %q, want %q", i, got[i], want[i])
		}
	}
	if a, _ := inv.Asset("plc-1"); !a.Suspect || a.SuspectReason != "answers with 02:00:00:00:00:66, declared 02:00:00:00:00:10" {
		t.Errorf("plc-1 %+v", a)
	}
	if a, _ := inv.Asset("hmi"); !a.Suspect || a.FirstMAC != "02:00:00:00:00:20" {
		t.Errorf("hmi %+v", a)
	}
	// The right MAC again clears plc-1's suspicion.
	inv.Observe("eth1", ip("10.0.0.10"), "02:00:00:00:00:10", t0.Add(5*time.Second), "ARP")
	if a, _ := inv.Asset("plc-1"); a.Suspect {
		t.Errorf("plc-1 still suspect: %+v", a)
	}
	devs := inv.Unknown()
	if len(devs) != 2 || devs[0].Note != `not declared; the MAC is asset "plc-1"'s` || devs[1].Note != `address of asset "plc-1" seen on eth2, declared on eth1` {
		t.Errorf("unknown %+v", devs)
	}

	// Absent after a minute unseen; seen again -> present.
	n := len(kinds(r))
	inv.Tick(t0.Add(61 * time.Second))
	if got := kinds(r)[n:]; len(got) != 0 {
		t.Errorf("absent too early: %q", got)
	}
	inv.Tick(t0.Add(66 * time.Second))
	if got := kinds(r)[n:]; len(got) != 2 || got[0] != "absent hmi 10.0.0.20 >02:00:00:00:00:21" || got[1] != "absent plc-1 10.0.0.10 >02:00:00:00:00:10" {
		t.Errorf("absent: %q", got)
	}
	inv.Observe("eth1", ip("10.0.0.20"), "02:00:00:00:00:21", t0.Add(70*time.Second), "ARP")
	if a, _ := inv.Asset("hmi"); a.State != AssetPresent {
		t.Errorf("hmi %+v", a)
	}

	// A policy edit keeps what was seen of unchanged assets and makes a
	// newly declared address no longer unknown.
	inv.SetAssets([]DeclaredAsset{
		{Name: "hmi", Link: "eth1", IP: ip("10.0.0.20")},
		{Name: "rtu", Link: "eth1", IP: ip("10.0.0.99")},
	}, t0.Add(80*time.Second))
	if a, _ := inv.Asset("hmi"); a.State != AssetPresent || a.SeenMAC != "02:00:00:00:00:21" {
		t.Errorf("hmi after edit %+v", a)
	}
	if devs := inv.Unknown(); len(devs) != 1 || devs[0].IP != ip("10.0.0.10") {
		t.Errorf("unknown after edit %+v", devs)
	}
}

func TestInventoryBoundsUnknown(t *testing.T) {
	inv := NewInventory(time.Minute, NewRing(16, nil))
	t0 := time.Now()
	for i := 0; i < MaxUnknownDevices+100; i++ {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		inv.Observe("eth1", a, "02:00:00:00:00:01", t0.Add(time.Duration(i)*time.Millisecond), "ARP")
	}
	devs := inv.Unknown()
	if len(devs) != MaxUnknownDevices {
		t.Fatalf("%d unknown devices kept, want %d", len(devs), MaxUnknownDevices)
	}
	if devs[0].IP != netip.AddrFrom4([4]byte{10, 0, 0, 100}) {
		t.Errorf("oldest kept %s, want the first 100 evicted", devs[0].IP)
	}
	if evs, _ := inv.Events.Since(0); len(evs) != 16 {
		t.Errorf("ring kept %d events, want 16", len(evs))
	}
}
