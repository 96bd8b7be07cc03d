package wire

import (
	"io"

	"github.com/fxamacker/cbor/v2"

	"github.com/otgate/otgate/internal/cborframe"
)

// MaxFrame bounds one framed CBOR message (a certificate chain fits easily).
const MaxFrame = 64 << 10

// frames is the wire's framing as the gate reads it: decoding is strict
// (a field the gate does not know is an error, never ignored: it could
// ask for something the gate would then not do) and bounded.
var frames = cborframe.MustNew(MaxFrame, cbor.DecOptions{
	ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	MaxArrayElements:  4096,
	MaxMapPairs:       4096,
	MaxNestedLevels:   8,
})

// fromGate is the framing as a client reads the gate's messages: bounded
// like frames, but a field the client does not know is skipped, so that a
// newer gate may tell more (a notice field, a reply detail) without
// breaking the clients already deployed. Nothing the gate enforces
// depends on the client understanding it.
var fromGate = cborframe.MustNew(MaxFrame, cbor.DecOptions{
	MaxArrayElements: 4096,
	MaxMapPairs:      4096,
	MaxNestedLevels:  8,
})

// Marshal encodes v as deterministic CBOR.
func Marshal(v any) ([]byte, error) { return frames.Marshal(v) }

// Unmarshal decodes CBOR strictly (unknown fields are errors).
func Unmarshal(b []byte, v any) error { return frames.Unmarshal(b, v) }

// WriteFrame writes v as one framed CBOR message in a single Write; one
// over MaxFrame is an error naming its size, and nothing is written.
func WriteFrame(w io.Writer, v any) error { return frames.Write(w, v) }

// ReadFrame reads one framed CBOR message into v, strictly (the gate's
// side), reading exactly the frame's bytes. At a clean end of the stream
// it returns io.EOF itself; see cborframe.Codec.Read.
func ReadFrame(r io.Reader, v any) error { return frames.Read(r, v) }

// ReadFromGate is ReadFrame for the client's side: fields it does not
// know are skipped (see fromGate).
func ReadFromGate(r io.Reader, v any) error { return fromGate.Read(r, v) }
