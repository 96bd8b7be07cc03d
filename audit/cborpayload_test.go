package audit

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestFastEncodingMatchesLibrary: the reflection-free encoders write
// exactly what encMode writes, for random payloads and envelopes whose
// fields take boundary values (every CBOR head length, negative numbers,
// empty, nil and long strings and byte strings, every omitempty field
// present or absent), and decline the shapes they do not cover.
func TestFastEncodingMatchesLibrary(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	uints := []uint64{0, 1, 23, 24, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxUint64}
	pickU := func(max uint64) uint64 {
		if rng.IntN(3) == 0 {
			return rng.Uint64N(max) + 1
		}
		v := uints[rng.IntN(len(uints))]
		return min(v, max)
	}
	pickI := func() int64 {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return -int64(pickU(math.MaxInt64)) - int64(rng.IntN(2))
		case 2:
			return int64(pickU(math.MaxInt64))
		}
		return rng.Int64() - rng.Int64()
	}
	lens := []int{0, 1, 23, 24, 255, 256, 70000}
	pickS := func() string {
		if rng.IntN(5) == 0 {
			return "" // omitted when omitempty
		}
		return strings.Repeat("ä", lens[rng.IntN(len(lens))]/2) + "x"
	}
	pickB := func() []byte {
		switch rng.IntN(4) {
		case 0:
			return nil
		case 1:
			return []byte{}
		}
		b := make([]byte, lens[rng.IntN(len(lens))])
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return b
	}
	u32 := func() uint32 { return uint32(pickU(math.MaxUint32)) }
	for i := range 3000 {
		p := Payload{SessionID: pickS(), First: Timestamp(pickI()), Last: Timestamp(pickI()),
			Direction: Direction(pickU(255)), Bytes: pickU(math.MaxUint64), Raw: pickB()}
		if rng.IntN(4) != 0 {
			d := &Decoded{Protocol: pickS(), Transaction: pickU(math.MaxUint64), Unit: u32(), Function: u32(),
				FunctionName: pickS(), Table: pickS(), Start: u32(), Count: u32(), Outcome: pickS(), Latency: pickI(),
				SubFunction: u32(), WriteStart: u32(), WriteCount: u32(), Written: pickB(), Read: pickB(),
				Verdict: pickS(), Result: pickS(), Exception: u32(), DenyException: u32(), Reason: pickS(), Refs: pickB()}
			switch rng.IntN(3) {
			case 0:
				d.Values = []int64{}
			case 1:
				for range rng.IntN(30) {
					d.Values = append(d.Values, pickI())
				}
			}
			p.Decoded = d
		}
		want, err := encMode.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := appendPayloadCBOR([]byte{0xAA}, &p)
		if !ok || got[0] != 0xAA || !bytes.Equal(got[1:], want) {
			t.Fatalf("payload %d (%+v, decoded %+v): fast encoding (ok %v)\n% x\nwant\n% x", i, p, p.Decoded, ok, got[1:], want)
		}

		rec := Record{Seq: pickU(math.MaxUint64), Time: Timestamp(pickI()), Prev: pickB(), Kind: Kind(pickU(255)), Body: pickB(), Dev: rng.IntN(2) == 0}
		want, err = encMode.Marshal(&rec)
		if err != nil {
			t.Fatal(err)
		}
		got, ok = appendRecordCBOR(nil, &rec)
		switch {
		case rec.Prev == nil || rec.Body == nil:
			if ok {
				t.Fatalf("record %d with a nil byte slice: fast encoding did not decline", i)
			}
		case !bytes.Equal(got, want):
			t.Fatalf("record %d (%+v): fast encoding\n% x\nwant\n% x", i, rec, got, want)
		}
	}
	withDetail := Payload{SessionID: "s", Direction: ToAsset, Decoded: &Decoded{Protocol: "modbus", Detail: map[string]string{"text": "t"}}}
	if _, ok := appendPayloadCBOR(nil, &withDetail); ok {
		t.Fatal("a Decoded with Detail: fast encoding did not decline")
	}
}
