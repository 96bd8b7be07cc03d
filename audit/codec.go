package audit

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	"github.com/fxamacker/cbor/v2"
)

// ErrEncoding is wrapped by errors about a record that is not valid,
// canonical CBOR of the expected shape.
var ErrEncoding = errors.New("bad record encoding")

var (
	encMode cbor.EncMode
	// bufEncMode is encMode's encoding into a caller's buffer: the append
	// path reuses its buffers instead of allocating two per record.
	bufEncMode cbor.UserBufferEncMode
	decMode    cbor.DecMode
)

func init() {
	var err error
	if encMode, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic(err)
	}
	if bufEncMode, err = cbor.CoreDetEncOptions().UserBufferEncMode(); err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		// Duplicate keys need no extra check: a map with a duplicate key
		// never re-encodes to the same bytes, so strictUnmarshal rejects it.
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		MaxNestedLevels:   8,
		MaxArrayElements:  MaxRecordSize,
		MaxMapPairs:       1024,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// encodeRecord returns the deterministic encoding of rec.
func encodeRecord(rec *Record) ([]byte, error) {
	return encMode.Marshal(rec)
}

func encodeBody(b Body) ([]byte, error) {
	if err := b.validate(); err != nil {
		return nil, err
	}
	enc, err := encMode.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encode %s body: %w", b.Kind(), err)
	}
	return enc, nil
}

// encodeBodyTo is encodeBody into buf (reset first); the result aliases buf.
// Payloads take the reflection-free encoder (cborpayload.go).
func encodeBodyTo(b Body, buf *bytes.Buffer) ([]byte, error) {
	if err := b.validate(); err != nil {
		return nil, err
	}
	buf.Reset()
	if p, ok := b.(Payload); ok {
		if enc, ok := appendPayloadCBOR(buf.AvailableBuffer(), &p); ok {
			buf.Write(enc) // in place when it fitted; grows buf for the next time otherwise
			return buf.Bytes(), nil
		}
	}
	if err := bufEncMode.MarshalToBuffer(b, buf); err != nil {
		return nil, fmt.Errorf("encode %s body: %w", b.Kind(), err)
	}
	return buf.Bytes(), nil
}

// bodyBufs holds buffers for bodies encoded outside the writer's lock.
var bodyBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBuf bounds the buffers kept for reuse.
const maxPooledBuf = 64 << 10

// strictUnmarshal decodes data into v and requires that data is exactly the
// deterministic encoding of v, so every record has one byte form only.
func strictUnmarshal(data []byte, v any, what string) error {
	if err := decMode.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrEncoding, what, err)
	}
	again, err := encMode.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: %s: re-encode: %w", ErrEncoding, what, err)
	}
	if !bytes.Equal(again, data) {
		return fmt.Errorf("%w: %s is not in deterministic (canonical) form", ErrEncoding, what)
	}
	return nil
}

// DecodeRecord decodes one record payload (the bytes inside a frame) and
// its body. It rejects unknown kinds and fields, non-canonical encodings and
// bodies missing required fields. The returned hash is SHA-256 of payload.
func DecodeRecord(payload []byte) (Record, Body, Hash, error) {
	var rec Record
	if err := strictUnmarshal(payload, &rec, "record"); err != nil {
		return Record{}, nil, Hash{}, err
	}
	if len(rec.Prev) != HashSize {
		return Record{}, nil, Hash{}, fmt.Errorf("%w: prev hash has %d bytes, want %d", ErrEncoding, len(rec.Prev), HashSize)
	}
	body, err := decodeBody(rec.Kind, rec.Body)
	if err != nil {
		return Record{}, nil, Hash{}, err
	}
	return rec, body, sha256.Sum256(payload), nil
}

func decodeBody(k Kind, data []byte) (Body, error) {
	var b Body
	switch k {
	case KindRotation:
		b = &Rotation{}
	case KindSessionStart:
		b = &SessionStart{}
	case KindPayload:
		b = &Payload{}
	case KindEvent:
		b = &Event{}
	case KindSessionEnd:
		b = &SessionEnd{}
	case KindCheckpoint:
		b = &Checkpoint{}
	default:
		return nil, fmt.Errorf("%w: unknown kind %d", ErrEncoding, uint8(k))
	}
	if err := strictUnmarshal(data, b, k.String()+" body"); err != nil {
		return nil, err
	}
	// Return the value type, as callers append values.
	switch v := b.(type) {
	case *Rotation:
		b = *v
	case *SessionStart:
		b = *v
	case *Payload:
		b = *v
	case *Event:
		b = *v
	case *SessionEnd:
		b = *v
	case *Checkpoint:
		b = *v
	}
	if err := b.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEncoding, err)
	}
	return b, nil
}
