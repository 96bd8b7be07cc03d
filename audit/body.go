package audit

// Body is the content of one record; each kind has its own type.
type Body interface {
	Kind() Kind
	validate() error
}

// Rotation is the first record of every file. In the first file PrevHead
// is Genesis(LogID); in later files it is the hash of the last record of
// the previous file (equal to the record's own Prev).
type Rotation struct {
	LogID    string `cbor:"1,keyasint"`
	File     uint64 `cbor:"2,keyasint"` // index in the file name
	PrevHead []byte `cbor:"3,keyasint"`
	PrevFile string `cbor:"4,keyasint,omitempty"`
	// NextUnsigned is the first seq not yet covered by a checkpoint when
	// the file was started; the next checkpoint's range starts there.
	NextUnsigned uint64 `cbor:"5,keyasint"`
	// Anchor is the last anchor value recorded in the log before the
	// file was started (nil: none yet), so the newest file alone tells
	// how far the log was anchored (see Anchor).
	Anchor *uint64 `cbor:"6,keyasint,omitempty"`
}

// SessionStart records the decision that let a session through. The proxy
// appends it durably before the first byte reaches the asset.
type SessionStart struct {
	SessionID  string    `cbor:"1,keyasint"`
	User       string    `cbor:"2,keyasint"`
	CertSerial string    `cbor:"3,keyasint,omitempty"`
	Source     string    `cbor:"4,keyasint,omitempty"` // client address
	Asset      string    `cbor:"5,keyasint"`
	Protocol   string    `cbor:"6,keyasint"`
	Rule       string    `cbor:"7,keyasint"`           // the grant that allowed it
	ValidUntil Timestamp `cbor:"8,keyasint,omitempty"` // when the decision stops holding
	// Endpoint is the gate address the client reached when the session
	// came in by Modbus/TCP Security on the asset's overlay endpoint
	// ("100.64.0.7:802"); empty for an otgate tunnel.
	Endpoint string `cbor:"9,keyasint,omitempty"`
}

// Direction is the way relayed bytes flowed.
type Direction uint8

// Directions of a payload record.
const (
	ToAsset  Direction = 1
	ToClient Direction = 2
)

func (d Direction) String() string {
	switch d {
	case ToAsset:
		return "->"
	case ToClient:
		return "<-"
	}
	return "?"
}

// Payload records relayed bytes of a session. Raw is an optional prefix of
// the bytes (truncated when len(Raw) < Bytes); Decoded is what a protocol
// inspector made of them.
type Payload struct {
	SessionID string    `cbor:"1,keyasint"`
	First     Timestamp `cbor:"2,keyasint"`           // first byte seen
	Last      Timestamp `cbor:"3,keyasint,omitempty"` // last byte seen
	Direction Direction `cbor:"4,keyasint"`
	Bytes     uint64    `cbor:"5,keyasint"`
	Raw       []byte    `cbor:"6,keyasint,omitempty"`
	Decoded   *Decoded  `cbor:"7,keyasint,omitempty"`
}

// Truncated reports whether Raw holds fewer bytes than were relayed.
func (p Payload) Truncated() bool { return uint64(len(p.Raw)) < p.Bytes }

// Decoded is a protocol inspector's view of one request or response. The
// fields fit register/table protocols (Modbus: Unit, Function, Table,
// Start, Count, Values); Detail holds anything else.
//
// Fields 13 to 22 detail a transaction so that a viewer renders the
// inspector's transcript line from them and the session's start record
// (user, asset) rather than the log storing the line as text; records
// written before them carry the line in Detail["text"].
type Decoded struct {
	Protocol     string            `cbor:"1,keyasint"`
	Transaction  uint64            `cbor:"2,keyasint,omitempty"`
	Unit         uint32            `cbor:"3,keyasint,omitempty"`
	Function     uint32            `cbor:"4,keyasint,omitempty"`
	FunctionName string            `cbor:"5,keyasint,omitempty"`
	Table        string            `cbor:"6,keyasint,omitempty"`
	Start        uint32            `cbor:"7,keyasint,omitempty"`
	Count        uint32            `cbor:"8,keyasint,omitempty"`
	Values       []int64           `cbor:"9,keyasint,omitempty"`
	Outcome      string            `cbor:"10,keyasint,omitempty"` // "ok", "exception 2", "denied: ..."
	Latency      int64             `cbor:"11,keyasint,omitempty"` // ns, request to response
	Detail       map[string]string `cbor:"12,keyasint,omitempty"`

	SubFunction   uint32 `cbor:"13,keyasint,omitempty"` // Modbus: diagnostics sub-function, MEI type
	WriteStart    uint32 `cbor:"14,keyasint,omitempty"` // write span of a combined read/write request
	WriteCount    uint32 `cbor:"15,keyasint,omitempty"`
	Written       []byte `cbor:"16,keyasint,omitempty"` // the values the request writes, as sent
	Read          []byte `cbor:"17,keyasint,omitempty"` // the values the response returns, as received
	Verdict       string `cbor:"18,keyasint,omitempty"` // "allowed", "denied", "would-deny"
	Result        string `cbor:"19,keyasint,omitempty"` // "ok", "exception", "no-response", "malformed", "unsolicited"
	Exception     uint32 `cbor:"20,keyasint,omitempty"` // the response's exception code (the gate's own when denied)
	DenyException uint32 `cbor:"21,keyasint,omitempty"` // what the policy answers, or would answer, the request with
	Reason        string `cbor:"22,keyasint,omitempty"` // why (would be) denied, or what is wrong with the response
	Refs          []byte `cbor:"23,keyasint,omitempty"` // Modbus: what a read file record asks for (its sub-requests, as sent)
}

// Event records a decision that is not a session: login failures,
// lockouts, refusals, unlocks, revocations, log recovery.
type Event struct {
	Type      string `cbor:"1,keyasint"`
	User      string `cbor:"2,keyasint,omitempty"`
	Source    string `cbor:"3,keyasint,omitempty"`
	SessionID string `cbor:"4,keyasint,omitempty"`
	Asset     string `cbor:"5,keyasint,omitempty"`
	Protocol  string `cbor:"6,keyasint,omitempty"`
	Rule      string `cbor:"7,keyasint,omitempty"`
	Reason    string `cbor:"8,keyasint,omitempty"`
	// Anchor: the value the anchor counter takes at this record (the
	// log's own log-anchored and log-closed events only; see Anchor).
	Anchor *uint64 `cbor:"9,keyasint,omitempty"`
	// Pruned: the file a log-pruned event says the log removed.
	Pruned *Pruned `cbor:"10,keyasint,omitempty"`
}

// SessionEnd records why and how a session ended.
type SessionEnd struct {
	SessionID     string `cbor:"1,keyasint"`
	Reason        string `cbor:"2,keyasint"`
	BytesToAsset  uint64 `cbor:"3,keyasint,omitempty"`
	BytesToClient uint64 `cbor:"4,keyasint,omitempty"`
}

// Checkpoint signs (log id, First, Last, Head): Head is the hash of record
// Last, and First is the first seq after the previous checkpoint's Last.
// KeyID names the signing key (see KeyID).
type Checkpoint struct {
	First     uint64 `cbor:"1,keyasint"`
	Last      uint64 `cbor:"2,keyasint"`
	Head      []byte `cbor:"3,keyasint"`
	KeyID     string `cbor:"4,keyasint"`
	Signature []byte `cbor:"5,keyasint"`
}

func (Rotation) Kind() Kind     { return KindRotation }
func (SessionStart) Kind() Kind { return KindSessionStart }
func (Payload) Kind() Kind      { return KindPayload }
func (Event) Kind() Kind        { return KindEvent }
func (SessionEnd) Kind() Kind   { return KindSessionEnd }
func (Checkpoint) Kind() Kind   { return KindCheckpoint }
