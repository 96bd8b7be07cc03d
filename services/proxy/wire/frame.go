package wire

import (
	"io"

	"github.com/fxamacker/cbor/v2"

	"github.com/otgate/otgate/internal/cborframe"
)

// MaxFrame bounds one framed CBOR message (a certificate chain fits easily).
const MaxFrame = 64 << 10

// frames is the wire's framing; decoding is strict (unknown fields are
// errors) and bounded.
var frames = cborframe.MustNew(MaxFrame, cbor.DecOptions{
	ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	MaxArrayElements:  4096,
	MaxMapPairs:       4096,
	MaxNestedLevels:   8,
})

// Marshal encodes v as deterministic CBOR.
func Marshal(v any) ([]byte, error) { return frames.Marshal(v) }

// Unmarshal decodes CBOR strictly (unknown fields are errors).
func Unmarshal(b []byte, v any) error { return frames.Unmarshal(b, v) }

// WriteFrame writes v as one framed CBOR message in a single Write; one
// over MaxFrame is an error naming its size, and nothing is written.
func WriteFrame(w io.Writer, v any) error { return frames.Write(w, v) }

// ReadFrame reads one framed CBOR message into v, reading exactly the
// frame's bytes. At a clean end of the stream it returns io.EOF itself;
// see cborframe.Codec.Read.
func ReadFrame(r io.Reader, v any) error { return frames.Read(r, v) }
