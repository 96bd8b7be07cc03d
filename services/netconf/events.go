package netconf

import (
	"fmt"
	"sync"
	"time"
)

// EventKind names what happened.
type EventKind string

// Event kinds. The first four come from the neighbour watch, the rest from
// the uplink's DHCP client.
const (
	EventUnknown    EventKind = "unknown-device" // an IP or MAC not declared
	EventAbsent     EventKind = "absent"         // a declared asset not seen in time
	EventPresent    EventKind = "present"        // a declared asset seen (again)
	EventMACChanged EventKind = "mac-changed"    // possible spoofing
	EventLease      EventKind = "lease"
	EventRenewed    EventKind = "renewed"
	EventRebound    EventKind = "rebound"
	EventNAK        EventKind = "nak"
	EventExpired    EventKind = "expired"
	EventReleased   EventKind = "released"
	EventRefused    EventKind = "refused" // a lease the uplink must not carry
)

// Event is one entry of the events ring.
type Event struct {
	Seq    uint64    `cbor:"1,keyasint" json:"seq"`
	Time   time.Time `cbor:"2,keyasint" json:"time"`
	Kind   EventKind `cbor:"3,keyasint" json:"kind"`
	Link   string    `cbor:"4,keyasint,omitempty" json:"link,omitempty"`
	Asset  string    `cbor:"5,keyasint,omitempty" json:"asset,omitempty"`
	IP     string    `cbor:"6,keyasint,omitempty" json:"ip,omitempty"`
	MAC    string    `cbor:"7,keyasint,omitempty" json:"mac,omitempty"`
	OldMAC string    `cbor:"8,keyasint,omitempty" json:"old_mac,omitempty"`
	Detail string    `cbor:"9,keyasint,omitempty" json:"detail,omitempty"`
}

func (e Event) String() string {
	s := fmt.Sprintf("%s #%d %s", e.Time.UTC().Format(time.RFC3339), e.Seq, e.Kind)
	if e.Link != "" {
		s += " on " + e.Link
	}
	if e.Asset != "" {
		s += " asset " + e.Asset
	}
	if e.IP != "" {
		s += " ip " + e.IP
	}
	if e.OldMAC != "" {
		s += " mac " + e.OldMAC + " -> " + e.MAC
	} else if e.MAC != "" {
		s += " mac " + e.MAC
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// DefaultRingSize is how many events the ring keeps.
const DefaultRingSize = 1024

// Ring keeps the latest events; the oldest fall off.
type Ring struct {
	mu   sync.Mutex
	buf  []Event
	next uint64
	size int
	logf func(string, ...any)
	// wake is closed and replaced on every Add (for waiters).
	wake chan struct{}
}

// NewRing returns a ring of size events (0: DefaultRingSize) that also
// logs every event with logf (nil: no log).
func NewRing(size int, logf func(string, ...any)) *Ring {
	if size <= 0 {
		size = DefaultRingSize
	}
	return &Ring{size: size, logf: logf, next: 1, wake: make(chan struct{})}
}

// Add records e, stamping its sequence number (and time, if zero).
func (r *Ring) Add(e Event) {
	r.mu.Lock()
	e.Seq = r.next
	r.next++
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	r.buf = append(r.buf, e)
	if len(r.buf) > r.size {
		r.buf = append(r.buf[:0], r.buf[len(r.buf)-r.size:]...)
	}
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
	if r.logf != nil {
		r.logf("netconf: event %s", e)
	}
}

// Since returns the kept events with Seq > after, oldest first, and a
// channel closed at the next Add.
func (r *Ring) Since(after uint64) ([]Event, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, e := range r.buf {
		if e.Seq > after {
			out = append(out, e)
		}
	}
	return out, r.wake
}
