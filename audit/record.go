package audit

import (
	"crypto/sha256"
	"fmt"
	"time"
)

// HashSize is the size of a record hash (SHA-256).
const HashSize = sha256.Size

// Hash is the SHA-256 of a record's CBOR encoding.
type Hash [HashSize]byte

// String returns the hash in lowercase hex.
func (h Hash) String() string { return fmt.Sprintf("%x", h[:]) }

// Kind says what a record's body is.
type Kind uint8

// Record kinds. The numbers are part of the on-disk format.
const (
	KindRotation     Kind = 1
	KindSessionStart Kind = 2
	KindPayload      Kind = 3
	KindEvent        Kind = 4
	KindSessionEnd   Kind = 5
	KindCheckpoint   Kind = 6
)

var kindNames = map[Kind]string{
	KindRotation:     "rotation",
	KindSessionStart: "session-start",
	KindPayload:      "payload",
	KindEvent:        "event",
	KindSessionEnd:   "session-end",
	KindCheckpoint:   "checkpoint",
}

func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Timestamp is a UTC instant in nanoseconds since the Unix epoch.
type Timestamp int64

// TimestampOf converts t to a Timestamp.
func TimestampOf(t time.Time) Timestamp {
	if t.IsZero() {
		return 0
	}
	return Timestamp(t.UnixNano())
}

// Time converts ts to a time.Time in UTC (the zero Time for 0).
func (ts Timestamp) Time() time.Time {
	if ts == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(ts)).UTC()
}

// Record is the envelope stored for every log entry. Body holds the
// deterministic CBOR encoding of the body named by Kind.
type Record struct {
	Seq  uint64    `cbor:"1,keyasint"`
	Time Timestamp `cbor:"2,keyasint"`
	Prev []byte    `cbor:"3,keyasint"`
	Kind Kind      `cbor:"4,keyasint"`
	Body []byte    `cbor:"5,keyasint"`
	// Dev marks a record written in dev mode (WithDevMode): the gate had
	// no TPM and its checkpoints are signed with a software key. It is
	// inside the hashed envelope, so it cannot be removed without breaking
	// the chain. Omitted when false: records written without dev mode have
	// exactly the bytes (and hashes) they had before the field existed.
	Dev bool `cbor:"6,keyasint,omitempty"`
}

// Genesis is the value the first record of a log chains to: SHA-256 of
// "otgate audit genesis" NUL log id.
func Genesis(logID string) Hash {
	return sha256.Sum256(append([]byte("otgate audit genesis\x00"), logID...))
}
