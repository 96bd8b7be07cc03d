package modbus

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// Seed corpora live in testdata/fuzz/<target>/ and run as ordinary tests.

func FuzzParseRequest(f *testing.F) {
	f.Add(adu(1, 1, []byte{3, 0, 0, 0, 10}))
	p := demoPolicy(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		var r Request
		err := r.Parse(frame)
		if err != nil {
			var fe *FieldError
			switch {
			case errors.Is(err, ErrIllegalRequest):
				// Answered with an exception built from the header and
				// function: both must be what the frame says.
				if !errors.As(err, &fe) || fe.Exception == 0 || len(frame) < HeaderLen+1 ||
					r.Header.TransactionID != be16(frame) || r.Function != Function(frame[HeaderLen]) || len(frame) != r.Header.FrameLen() {
					t.Fatalf("illegal request %v: exception %v, header %+v, function %v", err, fe, r.Header, r.Function)
				}
			case !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrOversized):
				t.Fatalf("error %v wraps neither ErrMalformed, ErrOversized nor ErrIllegalRequest", err)
			}
			return
		}
		if len(frame) > MaxADU || len(frame) != r.Header.FrameLen() || r.Header.ProtocolID != 0 {
			t.Fatalf("accepted frame of %d bytes with header %+v", len(frame), r.Header)
		}
		if r.Data != nil && !bytes.HasSuffix(frame, r.Data) {
			t.Fatalf("Data is not a suffix of the ADU (pending table relies on it)")
		}
		if r.Count > 0 && int(r.Address)+int(r.Count) > 65536 && r.Table != TableFileRecords {
			t.Fatalf("span %d+%d passes the address space", r.Address, r.Count)
		}
		if r.Function.Class() == ClassInvalid {
			t.Fatalf("accepted invalid function %d", r.Function)
		}
		d := p.Judge(&r)
		if !d.Allow && (d.Exception == 0 || d.Reason == "") {
			t.Fatalf("deny without exception or reason: %+v", d)
		}
		var rec Record
		rec.fillRequest(&r, time.Unix(0, 0))
		rec.Verdict = VerdictAllowed
		rec.AppendText(nil, "u", "a")
	})
}

func FuzzParseResponse(f *testing.F) {
	f.Add(adu(1, 1, []byte{3, 0, 0, 0, 1}), adu(1, 1, []byte{3, 2, 0, 7}))
	f.Fuzz(func(t *testing.T, reqFrame, respFrame []byte) {
		var resp Response
		err := resp.Parse(respFrame)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrOversized) {
				t.Fatalf("error %v wraps neither ErrMalformed nor ErrOversized", err)
			}
			return
		}
		if len(respFrame) > MaxADU || resp.Function >= 0x80 {
			t.Fatalf("accepted %d-byte frame, function %d", len(respFrame), resp.Function)
		}
		var req Request
		if req.Parse(reqFrame) != nil {
			return
		}
		if err := resp.Match(&req); err != nil {
			if !errors.Is(err, ErrMismatch) {
				t.Fatalf("match error %v does not wrap ErrMismatch", err)
			}
			return
		}
		var rec Record
		rec.fillRequest(&req, time.Unix(0, 0))
		rec.Verdict = VerdictAllowed
		rec.fillResponse(&resp, time.Unix(1, 0))
		rec.AppendText(nil, "u", "a")
	})
}

// FuzzFollower: the device stream yields the same frames and the same end
// however the bytes are split into reads (cut-through must not depend on
// segment boundaries).
func FuzzFollower(f *testing.F) {
	f.Add(append(adu(1, 1, []byte{3, 2, 0, 7}), adu(2, 1, []byte{0x83, 2})...), uint8(3))
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		collect := func(step int) ([][]byte, error) {
			var fl follower
			var frames [][]byte
			on := func(b []byte) { frames = append(frames, append([]byte(nil), b...)) }
			for i := 0; i < len(stream); i += step {
				if err := fl.feed(stream[i:min(i+step, len(stream))], on); err != nil {
					return frames, err
				}
			}
			return frames, nil
		}
		whole, werr := collect(max(len(stream), 1))
		split, serr := collect(int(chunk%17) + 1)
		if (werr == nil) != (serr == nil) || (werr != nil && werr.Error() != serr.Error()) {
			t.Fatalf("end differs: whole %v, split %v", werr, serr)
		}
		if len(whole) != len(split) {
			t.Fatalf("%d frames whole, %d split", len(whole), len(split))
		}
		for i := range whole {
			if !bytes.Equal(whole[i], split[i]) {
				t.Fatalf("frame %d differs: % x vs % x", i, whole[i], split[i])
			}
			if _, err := ParseHeader(whole[i]); err != nil || len(whole[i]) != int(be16(whole[i][4:]))+6 {
				t.Fatalf("frame %d bad: % x", i, whole[i])
			}
		}
	})
}
