package identity

// Key modes recorded in key.cbor and seal.cbor.
const (
	ModeTPM = "tpm"
	// ModeDev is dev mode: a software key and an unsealed data key on disk.
	ModeDev = "dev-software-key"
)

// keyRecord is key.cbor.
type keyRecord struct {
	Version int    `cbor:"1,keyasint"`
	Mode    string `cbor:"2,keyasint"`
	// TPM mode: TPM2B_PUBLIC and TPM2B_PRIVATE of the device key, as
	// returned by TPM2_Create under the SRK. The private blob is wrapped by
	// the SRK and useless outside this TPM.
	Public  []byte `cbor:"3,keyasint,omitempty"`
	Private []byte `cbor:"4,keyasint,omitempty"`
	// Dev mode: the software key, PKCS#8 DER.
	SoftwareKey []byte `cbor:"5,keyasint,omitempty"`
	// TPM mode: the name of the SRK made persistent at SRKHandle when the
	// identity was created (absent: it could not be, or an older state);
	// a start uses the key there only when its name is this one.
	SRKName []byte `cbor:"6,keyasint,omitempty"`
}

func (r *keyRecord) version() int { return r.Version }

// sealRecord is seal.cbor.
type sealRecord struct {
	Version int    `cbor:"1,keyasint"`
	Mode    string `cbor:"2,keyasint"`
	// PCRs (SHA-256 bank) the data key is sealed to, and their values at
	// sealing time (for the quarantine report: which PCR changed).
	PCRs      []uint   `cbor:"3,keyasint,omitempty"`
	PCRValues [][]byte `cbor:"4,keyasint,omitempty"`
	// TPM mode: the sealed keyed-hash object.
	Public  []byte `cbor:"5,keyasint,omitempty"`
	Private []byte `cbor:"6,keyasint,omitempty"`
	// Dev mode only: the data key in the clear.
	DevDataKey []byte `cbor:"7,keyasint,omitempty"`
	// NextBootDigest (NextSealFile only) is the boot measurement the slot
	// was sealed for by an authorized policy apply.
	NextBootDigest []byte `cbor:"8,keyasint,omitempty"`
}

func (r *sealRecord) version() int { return r.Version }

// deviceRecord is device.cbor.
type deviceRecord struct {
	Version int    `cbor:"1,keyasint"`
	Site    string `cbor:"2,keyasint"`
	Serial  string `cbor:"3,keyasint"`
	// SerialSource is "ek" (derived from the EK public key) or "random".
	SerialSource string `cbor:"4,keyasint"`
	// Cert is the device certificate (DER), self-signed until an
	// enterprise certificate is installed; Chain its issuers (DER).
	Cert       []byte   `cbor:"5,keyasint"`
	Chain      [][]byte `cbor:"6,keyasint,omitempty"`
	SelfSigned bool     `cbor:"7,keyasint"`
	// EK inventory: the RSA EK public key (PKIX DER, TCG default
	// template) and the EK certificates found in TPM NV.
	EKPublic  []byte `cbor:"8,keyasint,omitempty"`
	EKCertRSA []byte `cbor:"9,keyasint,omitempty"`
	EKCertECC []byte `cbor:"10,keyasint,omitempty"`
	CreatedAt int64  `cbor:"11,keyasint"` // unix seconds
	// ReplacedIdentity names the state directory a reset moved aside.
	ReplacedIdentity string `cbor:"12,keyasint,omitempty"`
	// ReplacedAt (unix seconds) is when a reset made this identity in
	// place of an earlier one (0: none was replaced); ReplacedSerial and
	// ReplacedKeyFingerprint name the earlier one when known (its
	// device.cbor, or the TPM's marker).
	ReplacedAt             int64  `cbor:"13,keyasint,omitempty"`
	ReplacedSerial         string `cbor:"14,keyasint,omitempty"`
	ReplacedKeyFingerprint string `cbor:"15,keyasint,omitempty"`
	// ReplacementLogged: the service has logged the replacement once.
	ReplacementLogged bool `cbor:"16,keyasint,omitempty"`
}

func (r *deviceRecord) version() int { return r.Version }

// workloadCARecord is workload-ca.cbor; the key is the named secret
// workloadCAKeySecret.
type workloadCARecord struct {
	Version int    `cbor:"1,keyasint"`
	Cert    []byte `cbor:"2,keyasint"`
}

func (r *workloadCARecord) version() int { return r.Version }

// secretRecord is secrets/<service>/<name>.cbor.
type secretRecord struct {
	Version    int    `cbor:"1,keyasint"`
	Name       string `cbor:"2,keyasint"`
	Nonce      []byte `cbor:"3,keyasint"`
	Ciphertext []byte `cbor:"4,keyasint"`
}

func (r *secretRecord) version() int { return r.Version }
