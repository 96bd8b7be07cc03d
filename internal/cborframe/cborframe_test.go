package cborframe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/fxamacker/cbor/v2"
)

type msg struct {
	Op   string `cbor:"1,keyasint"`
	Data []byte `cbor:"2,keyasint,omitempty"`
}

func strict(t *testing.T, max int) *Codec {
	t.Helper()
	c, err := New(max, cbor.DecOptions{ExtraReturnErrors: cbor.ExtraDecErrorUnknownField})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// frame is the wire form of a CBOR body: its length, 4 bytes big-endian,
// then the body.
func frame(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// The wire format, byte for byte: the 4-byte big-endian length, then the
// deterministic CBOR (map keys sorted, shortest forms).
func TestWireFormat(t *testing.T) {
	c := strict(t, 64)
	var buf bytes.Buffer
	if err := c.Write(&buf, map[int]string{2: "b", 1: "a"}); err != nil {
		t.Fatal(err)
	}
	want := []byte{0, 0, 0, 7, 0xa2, 0x01, 0x61, 'a', 0x02, 0x61, 'b'}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("frame % x, want % x", buf.Bytes(), want)
	}
	buf.Reset()
	if err := c.Write(&buf, msg{Op: "status"}); err != nil {
		t.Fatal(err)
	}
	want = frame([]byte{0xa1, 0x01, 0x66, 's', 't', 'a', 't', 'u', 's'})
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("frame % x, want % x", buf.Bytes(), want)
	}
}

// Frames read back one by one from a stream that hands out one byte per
// Read, each read taking exactly its frame's bytes; then the clean end of
// the stream is io.EOF itself.
func TestRoundTripReadsExactlyOneFrame(t *testing.T) {
	c := strict(t, 64)
	var buf bytes.Buffer
	in := []msg{{Op: "sign", Data: []byte{1, 2, 3}}, {Op: "status"}}
	for _, m := range in {
		if err := c.Write(&buf, m); err != nil {
			t.Fatal(err)
		}
	}
	r := iotest.OneByteReader(&buf)
	for i, want := range in {
		var got msg
		if err := c.Read(r, &got); err != nil || got.Op != want.Op || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("frame %d: %+v, %v; want %+v", i, got, err, want)
		}
	}
	var got msg
	if err := c.Read(r, &got); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF itself", err)
	}
}

// The limit counts the CBOR bytes: a message of exactly the limit goes
// both ways; one byte more is refused on writing with an error naming its
// size, and nothing is written.
func TestWriteEnforcesTheLimit(t *testing.T) {
	body, _ := cbor.Marshal([]byte(strings.Repeat("x", 30))) // 2 + 30 bytes
	c := strict(t, len(body))
	var buf bytes.Buffer
	if err := c.Write(&buf, []byte(strings.Repeat("x", 30))); err != nil {
		t.Fatalf("message of exactly the limit: %v", err)
	}
	var back []byte
	if err := c.Read(&buf, &back); err != nil || len(back) != 30 {
		t.Fatalf("message of exactly the limit read back: %d bytes, %v", len(back), err)
	}
	buf.Reset()
	err := c.Write(&buf, []byte(strings.Repeat("x", 31)))
	if err == nil || !strings.Contains(err.Error(), "frame of 33 bytes exceeds the limit of 32") {
		t.Fatalf("message one byte over the limit: %v, want an error naming 33 bytes and the limit 32", err)
	}
	if buf.Len() != 0 {
		t.Fatalf("a refused message wrote %d bytes", buf.Len())
	}
}

// A length over the limit is refused before the frame's bytes are read
// (the stream is left right after the length), with an error naming it.
func TestReadRefusesOversizeFrames(t *testing.T) {
	c := strict(t, 1<<20)
	for _, size := range []uint32{1<<20 + 1, math32} {
		stream := bytes.NewReader(append(binary.BigEndian.AppendUint32(nil, size), "rest of the stream"...))
		var got msg
		err := c.Read(stream, &got)
		if err == nil || !strings.Contains(err.Error(), "exceeds the limit of 1048576") ||
			!strings.Contains(err.Error(), fmt.Sprintf("frame of %d bytes", size)) {
			t.Fatalf("length %d: %v, want an error naming the size and the limit", size, err)
		}
		if stream.Len() != len("rest of the stream") {
			t.Fatalf("length %d: the refusal read %d bytes past the length", size, len("rest of the stream")-stream.Len())
		}
	}
}

const math32 = 1<<32 - 1

// A frame cut short, in its length or in its body, is an error wrapping
// io.ErrUnexpectedEOF that says how far it got; never io.EOF, which
// callers take for a clean close.
func TestReadShortFrames(t *testing.T) {
	c := strict(t, 64)
	whole := frame([]byte{0xa1, 0x01, 0x66, 's', 't', 'a', 't', 'u', 's'})
	for cut := 1; cut < len(whole); cut++ {
		var got msg
		err := c.Read(bytes.NewReader(whole[:cut]), &got)
		want := fmt.Sprintf("frame length cut short after %d of 4 bytes", cut)
		if cut >= 4 {
			want = fmt.Sprintf("frame of 9 bytes cut short after %d", cut-4)
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF || !strings.Contains(err.Error(), want) {
			t.Errorf("stream cut after %d bytes: %v, want io.ErrUnexpectedEOF saying %q", cut, err, want)
		}
	}
}

// Errors of the stream itself come back as they are.
func TestReadPassesStreamErrors(t *testing.T) {
	c := strict(t, 64)
	boom := errors.New("connection reset")
	var got msg
	if err := c.Read(iotest.ErrReader(boom), &got); err != boom {
		t.Fatalf("in the length: %v, want %v itself", err, boom)
	}
	r := io.MultiReader(bytes.NewReader([]byte{0, 0, 0, 9, 0xa1}), iotest.ErrReader(boom))
	if err := c.Read(r, &got); err != boom {
		t.Fatalf("in the body: %v, want %v itself", err, boom)
	}
}

// A frame whose body is not exactly one acceptable CBOR item is refused,
// naming the type it was to fill: unknown fields (with the strict options
// the protocols use), bytes after the item, an empty frame, bad CBOR.
func TestReadRefusesBadBodies(t *testing.T) {
	c := strict(t, 64)
	for name, body := range map[string][]byte{
		"unknown field":   {0xa2, 0x01, 0x61, 'a', 0x18, 0x63, 0x61, 'x'},
		"trailing bytes":  {0xa1, 0x01, 0x61, 'a', 0x00},
		"empty frame":     {},
		"truncated item":  {0xa1, 0x01, 0x66, 's'},
		"not a map":       {0x83, 1, 2, 3},
		"reserved 0xfc":   {0xfc},
		"wrong key types": {0xa1, 0x61, 'k', 0x61, 'v'},
	} {
		var got msg
		err := c.Read(bytes.NewReader(frame(body)), &got)
		if err == nil || !strings.Contains(err.Error(), "decode *cborframe.msg") {
			t.Errorf("%s: %v, want a decode error naming *cborframe.msg", name, err)
		}
		if errors.Is(err, io.EOF) {
			t.Errorf("%s: %v reads as a clean close (io.EOF)", name, err)
		}
	}
}

// Limits outside what a 4-byte length can say are refused.
func TestNewRefusesBadLimits(t *testing.T) {
	for _, max := range []int{0, -1, math32 + 1} {
		if _, err := New(max, cbor.DecOptions{}); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("frame limit %d:", max)) {
			t.Errorf("New(%d) = %v, want an error naming the limit", max, err)
		}
	}
	if c := MustNew(math32, cbor.DecOptions{}); c.Max() != math32 {
		t.Errorf("MustNew(%d).Max() = %d", math32, c.Max())
	}
}
