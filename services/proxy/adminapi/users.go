package adminapi

// User is one user of the proxy's user store (no secrets).
type User struct {
	Name        string   `cbor:"1,keyasint"`
	Roles       []string `cbor:"2,keyasint,omitempty"`
	Pending     bool     `cbor:"3,keyasint,omitempty"`
	Failures    int      `cbor:"4,keyasint,omitempty"`
	Locked      bool     `cbor:"5,keyasint,omitempty"`
	LockedUntil int64    `cbor:"6,keyasint,omitempty"` // unix ns; 0: until an admin unlocks
	Disabled    bool     `cbor:"7,keyasint,omitempty"`
	Generation  uint64   `cbor:"8,keyasint"`
	LastLogin   int64    `cbor:"9,keyasint,omitempty"` // unix ns; 0: never
}

// Enrolment is what a new (or reset) user puts into an authenticator app:
// the otpauth:// URI, and its parts for display. It is answered once.
type Enrolment struct {
	User      string `cbor:"1,keyasint"`
	URI       string `cbor:"2,keyasint"`
	Secret    []byte `cbor:"3,keyasint"`
	Algorithm string `cbor:"4,keyasint"`
	Digits    int    `cbor:"5,keyasint"`
	Period    int    `cbor:"6,keyasint"`
}
