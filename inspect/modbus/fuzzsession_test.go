package modbus

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// chunkReader returns the stream in reads of the given sizes (cycled).
type chunkReader struct {
	b     []byte
	sizes []byte
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := 1
	if len(c.sizes) > 0 {
		n = int(c.sizes[c.i%len(c.sizes)]) + 1
		c.i++
	}
	n = min(n, len(p), len(c.b))
	copy(p, c.b[:n])
	c.b = c.b[n:]
	return n, nil
}

// FuzzSessionRequests: whatever the client sends, however it is split
// into reads, the device receives exactly the well-formed frames the
// policy allows, in order and whole, up to the first malformed one; every
// frame the policy denies, and every frame whose values the specification
// forbids, is answered with its exception and recorded denied.
func FuzzSessionRequests(f *testing.F) {
	f.Add(append(adu(1, 1, []byte{3, 0, 0, 0, 10}), adu(2, 1, []byte{6, 0, 60, 0, 1})...), []byte{3})
	f.Add(append(adu(1, 1, []byte{0x18, 0, 99}), adu(2, 2, []byte{3, 0, 0, 0, 1})...), []byte{0, 7})
	p := demoPolicy(f)
	f.Fuzz(func(t *testing.T, stream, sizes []byte) {
		var denied []uint16
		sink := SinkFunc(func(r *Record) error {
			if r.Verdict == VerdictDenied {
				denied = append(denied, r.TransactionID)
			}
			return nil
		})
		var toDevice, toClient bytes.Buffer
		s, err := NewSession(Config{Policy: p, Sink: sink}, &toClient, &toDevice)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Requests(&chunkReader{b: stream, sizes: sizes})
		// The oracle: the stream frame by frame.
		var want, wantClient []byte
		var wantDenied []uint16
		rest := stream
		for len(rest) >= HeaderLen {
			h, herr := ParseHeader(rest)
			if herr != nil || len(rest) < h.FrameLen() {
				break
			}
			fr := rest[:h.FrameLen()]
			var req Request
			if perr := req.Parse(fr); perr != nil {
				// Framed correctly with values the specification
				// forbids (a quantity out of range, say): answered with
				// the device's exception, recorded denied, never
				// forwarded, and the session goes on. Anything else
				// malformed ends it.
				var fe *FieldError
				if !errors.As(perr, &fe) || fe.Exception == 0 {
					break
				}
				wantDenied = append(wantDenied, h.TransactionID)
				wantClient = AppendException(wantClient, &req, fe.Exception)
				rest = rest[h.FrameLen():]
				continue
			}
			if d := p.Judge(&req); d.Allow {
				want = append(want, fr...)
			} else {
				wantDenied = append(wantDenied, h.TransactionID)
				wantClient = AppendException(wantClient, &req, d.Exception)
			}
			rest = rest[h.FrameLen():]
		}
		if !bytes.Equal(toDevice.Bytes(), want) {
			t.Fatalf("device got % x, want % x", toDevice.Bytes(), want)
		}
		if !bytes.Equal(toClient.Bytes(), wantClient) {
			t.Fatalf("client got % x, want % x", toClient.Bytes(), wantClient)
		}
		if len(denied) != len(wantDenied) {
			t.Fatalf("denied records %v, want %v", denied, wantDenied)
		}
		var end *EndError
		if len(rest) > 0 && !errors.As(err, &end) {
			t.Fatalf("%d bytes left unjudged, Requests = %v", len(rest), err)
		}
		if len(rest) == 0 && err != nil {
			t.Fatalf("whole stream judged, Requests = %v", err)
		}
	})
}
