package netconf

import (
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// AssetState is what the neighbour watch knows of a declared asset.
type AssetState string

// Asset states.
const (
	AssetUnseen  AssetState = "unseen"  // not seen yet, still within the grace time
	AssetPresent AssetState = "present" // seen within the absent time
	AssetAbsent  AssetState = "absent"  // not seen within the absent time
)

// DeclaredAsset is one asset of the policy as the watch needs it.
type DeclaredAsset struct {
	Name string
	Zone string
	Link string // the zone's interface (eth1 or eth1.100)
	IP   netip.Addr
	MAC  string // lower-case, or empty
}

// AssetView is the inventory line of one declared asset.
type AssetView struct {
	Asset       string     `cbor:"1,keyasint" json:"asset"`
	Zone        string     `cbor:"2,keyasint" json:"zone"`
	Link        string     `cbor:"3,keyasint" json:"link"`
	IP          netip.Addr `cbor:"4,keyasint" json:"ip"`
	DeclaredMAC string     `cbor:"5,keyasint,omitempty" json:"declared_mac,omitempty"`
	SeenMAC     string     `cbor:"6,keyasint,omitempty" json:"seen_mac,omitempty"`
	FirstMAC    string     `cbor:"7,keyasint,omitempty" json:"first_mac,omitempty"`
	FirstSeen   time.Time  `cbor:"8,keyasint,omitempty" json:"first_seen,omitempty"`
	LastSeen    time.Time  `cbor:"9,keyasint,omitempty" json:"last_seen,omitempty"`
	State       AssetState `cbor:"10,keyasint" json:"state"`
	// Suspect is set while the asset answers with a MAC other than the
	// declared one (or, with none declared, the first one seen): a
	// possible spoof. The proxy refuses a suspect asset.
	Suspect       bool   `cbor:"11,keyasint" json:"suspect"`
	SuspectReason string `cbor:"12,keyasint,omitempty" json:"suspect_reason,omitempty"`
}

// Device is an undeclared device seen on a downlink.
type Device struct {
	Link      string     `cbor:"1,keyasint" json:"link"`
	IP        netip.Addr `cbor:"2,keyasint" json:"ip"`
	MAC       string     `cbor:"3,keyasint" json:"mac"`
	FirstSeen time.Time  `cbor:"4,keyasint" json:"first_seen"`
	LastSeen  time.Time  `cbor:"5,keyasint" json:"last_seen"`
	Note      string     `cbor:"6,keyasint,omitempty" json:"note,omitempty"`
}

// MaxUnknownDevices bounds the table of undeclared devices (a flood of
// forged addresses must not exhaust memory); the least recently seen go.
const MaxUnknownDevices = 4096

// Inventory compares what is seen on the downlinks with the declared
// assets and raises events.
type Inventory struct {
	// AbsentAfter is how long a declared asset may go unseen.
	AbsentAfter time.Duration
	Events      *Ring

	mu      sync.Mutex
	assets  map[netip.Addr]*AssetView
	byMAC   map[string]string // declared MAC -> asset
	unknown map[string]*Device
	since   time.Time // when the current declaration started counting
}

// NewInventory returns an empty inventory.
func NewInventory(absentAfter time.Duration, events *Ring) *Inventory {
	return &Inventory{AbsentAfter: absentAfter, Events: events, assets: map[netip.Addr]*AssetView{},
		byMAC: map[string]string{}, unknown: map[string]*Device{}, since: time.Now()}
}

// SetAssets replaces the declared assets; what was observed of an asset
// whose name, link, address and MAC are unchanged is kept.
func (inv *Inventory) SetAssets(decl []DeclaredAsset, now time.Time) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	old := inv.assets
	inv.assets = map[netip.Addr]*AssetView{}
	inv.byMAC = map[string]string{}
	for _, d := range decl {
		v := &AssetView{Asset: d.Name, Zone: d.Zone, Link: d.Link, IP: d.IP, DeclaredMAC: d.MAC, State: AssetUnseen}
		if o := old[d.IP]; o != nil && o.Asset == d.Name && o.Link == d.Link && o.DeclaredMAC == d.MAC {
			v = o
		}
		inv.assets[d.IP] = v
		if d.MAC != "" {
			inv.byMAC[d.MAC] = d.Name
		}
		delete(inv.unknown, deviceKey(d.Link, d.IP, ""))
	}
	// Undeclared devices whose address is now declared are no longer
	// unknown.
	for k, dev := range inv.unknown {
		if _, ok := inv.assets[dev.IP]; ok {
			delete(inv.unknown, k)
		}
	}
	if len(old) == 0 {
		inv.since = now
	}
}

func deviceKey(link string, ip netip.Addr, mac string) string {
	return link + "|" + ip.String() + "|" + mac
}

// Observe records that ip answered (or spoke) with mac on link.
func (inv *Inventory) Observe(link string, ip netip.Addr, mac string, now time.Time, source string) {
	if !ip.Is4() || ip.IsUnspecified() || mac == "" {
		return
	}
	inv.mu.Lock()
	var events []Event
	defer func() {
		inv.mu.Unlock()
		for _, e := range events {
			inv.Events.Add(e)
		}
	}()
	a := inv.assets[ip]
	if a != nil && a.Link != link {
		a = nil // the address of an asset of another downlink: treat as unknown here
	}
	if a == nil {
		k := deviceKey(link, ip, mac)
		if d := inv.unknown[k]; d != nil {
			d.LastSeen = now
			return
		}
		note := "not declared"
		if other, ok := inv.assets[ip]; ok {
			note = fmt.Sprintf("address of asset %q seen on %s, declared on %s", other.Asset, link, other.Link)
		} else if owner, ok := inv.byMAC[mac]; ok {
			note = fmt.Sprintf("not declared; the MAC is asset %q's", owner)
		}
		inv.evictUnknown()
		inv.unknown[k] = &Device{Link: link, IP: ip, MAC: mac, FirstSeen: now, LastSeen: now, Note: note}
		events = append(events, Event{Time: now, Kind: EventUnknown, Link: link, IP: ip.String(), MAC: mac, Detail: note + " (" + source + ")"})
		return
	}
	if a.SeenMAC != "" && a.SeenMAC != mac {
		events = append(events, Event{Time: now, Kind: EventMACChanged, Link: link, Asset: a.Asset, IP: ip.String(), MAC: mac, OldMAC: a.SeenMAC,
			Detail: "possible spoofing (" + source + ")"})
	} else if a.SeenMAC == "" && a.DeclaredMAC != "" && mac != a.DeclaredMAC {
		events = append(events, Event{Time: now, Kind: EventMACChanged, Link: link, Asset: a.Asset, IP: ip.String(), MAC: mac, OldMAC: a.DeclaredMAC,
			Detail: "differs from the declared MAC: possible spoofing (" + source + ")"})
	}
	if a.FirstSeen.IsZero() {
		a.FirstSeen, a.FirstMAC = now, mac
	}
	a.SeenMAC, a.LastSeen = mac, now
	switch {
	case a.DeclaredMAC != "" && mac != a.DeclaredMAC:
		a.Suspect, a.SuspectReason = true, fmt.Sprintf("answers with %s, declared %s", mac, a.DeclaredMAC)
	case a.DeclaredMAC == "" && mac != a.FirstMAC:
		a.Suspect, a.SuspectReason = true, fmt.Sprintf("answers with %s, first seen with %s", mac, a.FirstMAC)
	default:
		a.Suspect, a.SuspectReason = false, ""
	}
	if a.State != AssetPresent {
		detail := "seen (" + source + ")"
		if a.State == AssetAbsent {
			detail = "seen again (" + source + ")"
		}
		a.State = AssetPresent
		events = append(events, Event{Time: now, Kind: EventPresent, Link: link, Asset: a.Asset, IP: ip.String(), MAC: mac, Detail: detail})
	}
}

func (inv *Inventory) evictUnknown() {
	for len(inv.unknown) >= MaxUnknownDevices {
		var oldest string
		var t time.Time
		for k, d := range inv.unknown {
			if oldest == "" || d.LastSeen.Before(t) {
				oldest, t = k, d.LastSeen
			}
		}
		delete(inv.unknown, oldest)
	}
}

// Tick marks declared assets unseen for AbsentAfter as absent.
func (inv *Inventory) Tick(now time.Time) {
	inv.mu.Lock()
	var events []Event
	for _, a := range inv.assets {
		if a.State == AssetAbsent {
			continue
		}
		last := a.LastSeen
		if last.IsZero() || last.Before(inv.since) {
			last = inv.since
		}
		if now.Sub(last) < inv.AbsentAfter {
			continue
		}
		a.State = AssetAbsent
		detail := fmt.Sprintf("not seen for %s", now.Sub(last).Round(time.Second))
		if a.LastSeen.IsZero() {
			detail = fmt.Sprintf("never seen in %s", now.Sub(last).Round(time.Second))
		}
		events = append(events, Event{Time: now, Kind: EventAbsent, Link: a.Link, Asset: a.Asset, IP: a.IP.String(), MAC: a.SeenMAC, Detail: detail})
	}
	inv.mu.Unlock()
	sort.Slice(events, func(i, j int) bool { return events[i].Asset < events[j].Asset })
	for _, e := range events {
		inv.Events.Add(e)
	}
}

// Assets returns the inventory lines, sorted by asset name.
func (inv *Inventory) Assets() []AssetView {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	out := make([]AssetView, 0, len(inv.assets))
	for _, a := range inv.assets {
		out = append(out, *a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Asset < out[j].Asset })
	return out
}

// Asset returns one asset's line.
func (inv *Inventory) Asset(name string) (AssetView, bool) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	for _, a := range inv.assets {
		if a.Asset == name {
			return *a, true
		}
	}
	return AssetView{}, false
}

// Unknown returns the undeclared devices seen, sorted by link and IP.
func (inv *Inventory) Unknown() []Device {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	out := make([]Device, 0, len(inv.unknown))
	for _, d := range inv.unknown {
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Link != out[j].Link {
			return out[i].Link < out[j].Link
		}
		if out[i].IP != out[j].IP {
			return out[i].IP.Less(out[j].IP)
		}
		return out[i].MAC < out[j].MAC
	})
	return out
}

// probeTargets lists the declared addresses on link inside src's subnet.
func (inv *Inventory) probeTargets(link string, src netip.Prefix) []netip.Addr {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	var out []netip.Addr
	for ip, a := range inv.assets {
		if a.Link == link && src.Masked().Contains(ip) && ip != src.Addr() {
			out = append(out, ip)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}
