package ruleset

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/google/nftables"
)

// Flow is one forwarded or outgoing flow: source, destination, protocol and
// destination port (the port is meaningful for tcp and udp only).
type Flow struct {
	From     string `cbor:"1,keyasint" json:"from"`
	To       string `cbor:"2,keyasint" json:"to"`
	Protocol string `cbor:"3,keyasint" json:"protocol"`
	Port     uint16 `cbor:"4,keyasint" json:"port"`
}

func (f Flow) String() string {
	return fmt.Sprintf("%s -> %s %s/%d", f.From, f.To, f.Protocol, f.Port)
}

// WouldBlock is one flow that enforce mode would have dropped, as recorded
// by the kernel in monitor mode.
type WouldBlock struct {
	Flow      Flow      `cbor:"1,keyasint" json:"flow"`
	Packets   uint64    `cbor:"2,keyasint" json:"packets"`
	Bytes     uint64    `cbor:"3,keyasint" json:"bytes"`
	FirstSeen time.Time `cbor:"4,keyasint" json:"first_seen"`
	LastSeen  time.Time `cbor:"5,keyasint" json:"last_seen"`
}

// ExceptionCounter is the kernel's view of one installed exception.
type ExceptionCounter struct {
	ID      string        `cbor:"1,keyasint" json:"id"`
	Flow    Flow          `cbor:"2,keyasint" json:"flow"`
	Packets uint64        `cbor:"3,keyasint" json:"packets"`
	Bytes   uint64        `cbor:"4,keyasint" json:"bytes"`
	Expires time.Duration `cbor:"5,keyasint" json:"expires_in"`
}

func flowFromKey(k []byte) (Flow, error) {
	if len(k) != 16 {
		return Flow{}, fmt.Errorf("flow key of %d bytes, want 16: %s", len(k), hex.EncodeToString(k))
	}
	return Flow{
		From:     netip.AddrFrom4([4]byte(k[0:4])).String(),
		To:       netip.AddrFrom4([4]byte(k[4:8])).String(),
		Protocol: protoName(k[8]),
		Port:     uint16(k[12])<<8 | uint16(k[13]),
	}, nil
}

// ReadWouldBlock reads the kernel's monitor-mode record at now. Each flow's
// last packet time comes from the refreshed timer of the "last" set, its
// first packet time from the never-refreshed timer of the "first" set (both
// with millisecond precision). A flow idle for longer than the would-block
// TTL leaves the kernel sets; the service keeps the history beyond that.
func ReadWouldBlock(conn *nftables.Conn, now time.Time) ([]WouldBlock, error) {
	last, err := readElems(conn, SetWBLast)
	if err != nil {
		return nil, err
	}
	first, err := readElems(conn, SetWBFirst)
	if err != nil {
		return nil, err
	}
	firstSeen := map[string]time.Time{}
	for _, e := range first.elems {
		firstSeen[string(e.Key)] = now.Add(-(first.timeout(e) - e.Expires))
	}
	var out []WouldBlock
	for _, e := range last.elems {
		f, err := flowFromKey(e.Key)
		if err != nil {
			return nil, fmt.Errorf("ruleset: set %s: %w", SetWBLast, err)
		}
		wb := WouldBlock{Flow: f, LastSeen: now.Add(-(last.timeout(e) - e.Expires))}
		if e.Counter != nil {
			wb.Packets, wb.Bytes = e.Counter.Packets, e.Counter.Bytes
		}
		wb.FirstSeen = wb.LastSeen
		if fs, ok := firstSeen[string(e.Key)]; ok && fs.Before(wb.LastSeen) {
			wb.FirstSeen = fs
		}
		out = append(out, wb)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Flow.String() < out[j].Flow.String() })
	return out, nil
}

// ReadExceptions reads the installed exceptions and their counters (both
// directions of the flow are counted).
func ReadExceptions(conn *nftables.Conn) ([]ExceptionCounter, error) {
	set, err := readElems(conn, SetExceptions)
	if err != nil {
		return nil, err
	}
	var out []ExceptionCounter
	for _, e := range set.elems {
		f, err := flowFromKey(e.Key)
		if err != nil {
			return nil, fmt.Errorf("ruleset: set %s: %w", SetExceptions, err)
		}
		c := ExceptionCounter{ID: e.Comment, Flow: f, Expires: e.Expires}
		if e.Counter != nil {
			c.Packets, c.Bytes = e.Counter.Packets, e.Counter.Bytes
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

type setElems struct {
	set   *nftables.Set
	elems []nftables.SetElement
}

// timeout is an element's full lifetime: its own, or the set's default
// (the kernel reports an element timeout only when it differs).
func (s setElems) timeout(e nftables.SetElement) time.Duration {
	if e.Timeout != 0 {
		return e.Timeout
	}
	return s.set.Timeout
}

func readElems(conn *nftables.Conn, name string) (setElems, error) {
	s, err := conn.GetSetByName(Table, name)
	if err != nil {
		return setElems{}, fmt.Errorf("ruleset: set %s: %w", name, err)
	}
	elems, err := conn.GetSetElements(s)
	if err != nil {
		return setElems{}, fmt.Errorf("ruleset: elements of set %s: %w", name, err)
	}
	return setElems{s, elems}, nil
}
