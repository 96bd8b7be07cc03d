package api

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func TestMessageRoundTripAndBadFrames(t *testing.T) {
	var buf bytes.Buffer
	in := &Request{Op: OpSignMessage, Digest: []byte{1, 2, 3}, Hash: 5}
	if err := WriteMessage(&buf, in); err != nil {
		t.Fatal(err)
	}
	var out Request
	if err := ReadMessage(&buf, &out); err != nil || out.Op != in.Op || !bytes.Equal(out.Digest, in.Digest) || out.Hash != 5 {
		t.Fatalf("round trip: %+v, %v", out, err)
	}

	huge := make([]byte, 4)
	binary.BigEndian.PutUint32(huge, MaxMessage+1)
	if err := ReadMessage(bytes.NewReader(huge), &out); err == nil {
		t.Fatal("oversized frame accepted")
	}
	short := append(binary.BigEndian.AppendUint32(nil, 10), 0xa1)
	if err := ReadMessage(bytes.NewReader(short), &out); err == nil {
		t.Fatal("truncated frame accepted")
	}
	// Unknown fields are errors, not silently dropped.
	var b bytes.Buffer
	WriteMessage(&b, map[int]string{1: "status", 99: "x"})
	if err := ReadMessage(&b, &out); err == nil {
		t.Fatal("unknown field accepted")
	}
}

func TestErrorMatchesByCode(t *testing.T) {
	err := error(&Error{Op: OpUnseal, Code: CodeQuarantine, Msg: "PCR 15"})
	if !errors.Is(err, ErrQuarantine) || errors.Is(err, ErrDenied) {
		t.Fatalf("errors.Is on %v", err)
	}
}
