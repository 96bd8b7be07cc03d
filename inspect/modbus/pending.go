package modbus

import "time"

// outstanding is one forwarded request waiting for its response. It owns
// a copy of the request frame, so the request stays decoded after the
// read buffer moves on.
type outstanding struct {
	used    bool
	seq     uint64
	at      time.Time
	verdict Verdict
	dec     Decision
	req     Request
	frame   [MaxADU]byte
}

// pendingTable holds the outstanding requests of a session (pipelining:
// several transaction ids at once). Fixed size, no allocation after
// creation; the caller locks.
type pendingTable struct {
	slots []outstanding
	seq   uint64
}

// put stores req; if its transaction id is already outstanding, or the
// table is full, the displaced request is returned first through evict.
func (p *pendingTable) put(req *Request, at time.Time, verdict Verdict, dec Decision, evict func(*outstanding)) {
	var slot *outstanding
	for i := range p.slots {
		s := &p.slots[i]
		if s.used && s.req.Header.TransactionID == req.Header.TransactionID {
			evict(s)
			slot = s
			break
		}
	}
	if slot == nil {
		for i := range p.slots {
			s := &p.slots[i]
			if !s.used {
				slot = s
				break
			}
			if slot == nil || s.seq < slot.seq {
				slot = s
			}
		}
		if slot.used {
			evict(slot)
		}
	}
	p.seq++
	slot.used, slot.seq, slot.at, slot.verdict, slot.dec = true, p.seq, at, verdict, dec
	n := copy(slot.frame[:], req.ADU)
	slot.req = *req
	slot.req.ADU = slot.frame[:n]
	if req.Data != nil {
		// Parse leaves Data as a suffix of the ADU for every function.
		slot.req.Data = slot.req.ADU[n-len(req.Data):]
	}
}

// take finds the outstanding request with transaction id tid.
func (p *pendingTable) take(tid uint16) *outstanding {
	for i := range p.slots {
		if s := &p.slots[i]; s.used && s.req.Header.TransactionID == tid {
			return s
		}
	}
	return nil
}

// count returns the number of outstanding requests.
func (p *pendingTable) count() int {
	n := 0
	for i := range p.slots {
		if p.slots[i].used {
			n++
		}
	}
	return n
}
