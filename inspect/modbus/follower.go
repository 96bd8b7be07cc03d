package modbus

// follower reassembles the device's response stream into frames while
// the bytes themselves are already on their way to the client.
type follower struct {
	frame  [MaxADU]byte
	have   int   // bytes of the current frame held in frame
	offset int64 // stream offset of the current frame's first byte
}

// feed consumes b and calls onFrame for each complete frame. A frame that
// lies wholly inside b is passed without copying. A bad MBAP header
// returns an *EndError: the stream can no longer be followed.
func (f *follower) feed(b []byte, onFrame func([]byte)) error {
	for len(b) > 0 {
		if f.have == 0 && len(b) >= HeaderLen {
			h, err := ParseHeader(b)
			if err != nil {
				return &EndError{Direction: "device->client", Offset: f.offset, Err: err}
			}
			if n := h.FrameLen(); len(b) >= n {
				onFrame(b[:n])
				f.offset += int64(n)
				b = b[n:]
				continue
			}
		}
		want := HeaderLen
		if f.have >= HeaderLen {
			want = int(be16(f.frame[4:])) + HeaderLen - 1
		}
		c := copy(f.frame[f.have:want], b)
		f.have += c
		b = b[c:]
		if f.have == HeaderLen {
			if _, err := ParseHeader(f.frame[:HeaderLen]); err != nil {
				return &EndError{Direction: "device->client", Offset: f.offset, Err: err}
			}
			// MinLength 2 means a frame is always longer than its header.
			continue
		}
		if f.have == want && f.have > HeaderLen {
			onFrame(f.frame[:f.have])
			f.offset += int64(f.have)
			f.have = 0
		}
	}
	return nil
}
