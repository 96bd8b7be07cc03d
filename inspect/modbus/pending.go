package modbus

import "time"

// outstanding is one forwarded request waiting for its response. It owns
// a copy of the request frame, so the request stays decoded after the
// read buffer moves on.
type outstanding struct {
	idx     int // position in the table
	seq     uint64
	at      time.Time
	verdict Verdict
	dec     Decision
	req     Request
	frame   [MaxADU]byte
}

// pendingTable holds the outstanding requests of a session (pipelining:
// several transaction ids at once). Fixed size, no allocation after
// creation; the caller locks. Lookups scan the compact used/tids/units
// index, not the slots (each several hundred bytes): with hundreds of sessions
// the slots are mostly out of cache.
type pendingTable struct {
	slots []outstanding
	used  []bool   // used[i]: slots[i] holds an outstanding request
	tids  []uint16 // tids[i]: its transaction id
	units []uint8  // units[i]: its unit id
	n     int      // outstanding requests
	seq   uint64
}

func newPendingTable(size int) pendingTable {
	p := pendingTable{slots: make([]outstanding, size), used: make([]bool, size), tids: make([]uint16, size), units: make([]uint8, size)}
	for i := range p.slots {
		p.slots[i].idx = i
	}
	return p
}

// put stores req and returns its slot; if the table is full, the oldest request is handed to
// evict first, then released. A transaction id already outstanding is
// stored again: the client reused it, the device answers both, and take
// matches the responses in order.
func (p *pendingTable) put(req *Request, at time.Time, verdict Verdict, dec Decision, evict func(*outstanding)) *outstanding {
	tid := req.Header.TransactionID
	i := -1
	for j, u := range p.used {
		if !u {
			i = j
			break
		}
		if i < 0 || p.slots[j].seq < p.slots[i].seq {
			i = j // the oldest, if none is free
		}
	}
	slot := &p.slots[i]
	if p.used[i] {
		evict(slot)
		p.release(slot)
	}
	p.seq++
	p.used[i], p.tids[i], p.units[i] = true, tid, req.Header.Unit
	p.n++
	slot.seq, slot.at, slot.verdict, slot.dec = p.seq, at, verdict, dec
	n := copy(slot.frame[:], req.ADU)
	slot.req = *req
	slot.req.ADU = slot.frame[:n]
	if req.Data != nil {
		// Parse leaves Data as a suffix of the ADU for every function.
		slot.req.Data = slot.req.ADU[n-len(req.Data):]
	}
	return slot
}

// find returns the slot index of the oldest outstanding request with
// transaction id tid to unit, or else of the oldest with tid to another
// unit (its response is then recorded as not matching), or -1.
func (p *pendingTable) find(tid uint16, unit uint8) int {
	found, other := -1, -1
	for i, t := range p.tids {
		if t != tid || !p.used[i] {
			continue
		}
		if p.units[i] == unit {
			if found < 0 || p.slots[i].seq < p.slots[found].seq {
				found = i
			}
		} else if other < 0 || p.slots[i].seq < p.slots[other].seq {
			other = i
		}
	}
	if found < 0 {
		return other
	}
	return found
}

// take finds the request a response with transaction id tid from unit
// answers: the oldest outstanding one with that id to that unit (a
// device answers in order the requests that share one; a gateway's
// devices answer at their own pace, and a client may number each
// device's transactions on its own), else the oldest with that id. The
// caller releases it once done with it.
func (p *pendingTable) take(tid uint16, unit uint8) *outstanding {
	if i := p.find(tid, unit); i >= 0 {
		return &p.slots[i]
	}
	return nil
}

// release frees o's slot.
func (p *pendingTable) release(o *outstanding) {
	if p.used[o.idx] {
		p.used[o.idx] = false
		p.n--
	}
}

// oldest returns the outstanding request forwarded first, or nil.
func (p *pendingTable) oldest() *outstanding {
	var o *outstanding
	for i, u := range p.used {
		if u && (o == nil || p.slots[i].seq < o.seq) {
			o = &p.slots[i]
		}
	}
	return o
}

// count returns the number of outstanding requests.
func (p *pendingTable) count() int { return p.n }
