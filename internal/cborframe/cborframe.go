// Package cborframe puts CBOR messages on a stream, each framed by its
// length as a 4-byte big-endian integer, as the gate's local protocols do
// (the identity service's socket, the proxy's control wire). Messages are
// encoded deterministically (cbor.CoreDetEncOptions) and decoded with the
// protocol's own options; each protocol bounds its frames, and a frame
// over the bound is refused before a byte of it is written or read.
package cborframe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/fxamacker/cbor/v2"
)

// Codec reads and writes the frames of one protocol.
type Codec struct {
	max int
	enc cbor.EncMode
	dec cbor.DecMode
}

// New returns a Codec for frames of at most max bytes of CBOR (not
// counting the length prefix), decoded with dec.
func New(max int, dec cbor.DecOptions) (*Codec, error) {
	if max < 1 || uint64(max) > math.MaxUint32 {
		return nil, fmt.Errorf("cborframe: frame limit %d: want 1 to %d bytes", max, uint32(math.MaxUint32))
	}
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		return nil, fmt.Errorf("cborframe: encode options: %w", err)
	}
	dm, err := dec.DecMode()
	if err != nil {
		return nil, fmt.Errorf("cborframe: decode options: %w", err)
	}
	return &Codec{max: max, enc: em, dec: dm}, nil
}

// MustNew is New for a package variable: it panics on a bad limit or bad
// decode options, which are the program's own constants.
func MustNew(max int, dec cbor.DecOptions) *Codec {
	c, err := New(max, dec)
	if err != nil {
		panic(err)
	}
	return c
}

// Max is the largest frame the Codec writes or reads, in bytes of CBOR.
func (c *Codec) Max() int { return c.max }

// Marshal encodes v as deterministic CBOR (no frame).
func (c *Codec) Marshal(v any) ([]byte, error) { return c.enc.Marshal(v) }

// Unmarshal decodes one CBOR item, the whole of b, with the Codec's
// decode options (no frame).
func (c *Codec) Unmarshal(b []byte, v any) error { return c.dec.Unmarshal(b, v) }

// Write writes v as one frame in a single Write. A message over the limit
// is an error naming its size, and nothing is written.
func (c *Codec) Write(w io.Writer, v any) error {
	b, err := c.enc.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %T: %w", v, err)
	}
	if len(b) > c.max {
		return fmt.Errorf("%T: frame of %d bytes exceeds the limit of %d", v, len(b), c.max)
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err = w.Write(buf)
	return err
}

// Read reads one frame into v, reading exactly the frame's bytes. At a
// clean end of the stream (no byte of a new frame) it returns io.EOF
// itself; a frame cut short is an error wrapping io.ErrUnexpectedEOF
// that says how far it got; a length over the limit is an error naming
// it, returned before the frame's bytes are read; other read errors come
// back as they are.
func (c *Codec) Read(r io.Reader, v any) error {
	var hdr [4]byte
	if n, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("frame length cut short after %d of 4 bytes: %w", n, err)
		}
		return err
	}
	size := binary.BigEndian.Uint32(hdr[:])
	if uint64(size) > uint64(c.max) {
		return fmt.Errorf("frame of %d bytes exceeds the limit of %d", size, c.max)
	}
	if size == 0 {
		return fmt.Errorf("decode %T: empty frame (0 bytes), want one CBOR item", v)
	}
	b := make([]byte, size)
	if n, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("frame of %d bytes cut short after %d: %w", size, n, io.ErrUnexpectedEOF)
		}
		return err
	}
	if err := c.dec.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %T: %w", v, err)
	}
	return nil
}
