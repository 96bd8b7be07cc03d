package identity

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// DefaultStateDir is where the identity lives on the appliance.
const DefaultStateDir = "/perm/identity"

// Flags are the command-line options shared by the otgate-identity service
// and `otgate identity`.
type Flags struct {
	StateDir  string
	Site      string
	TPMDevice string
	TPMSocket string
	DevMode   bool
	PCRs      string
	// AllowVolatileState lets a TPM identity be created on a tmpfs
	// state directory (tests; never on a gate).
	AllowVolatileState bool
}

// RegisterFlags defines the shared flags on fs.
func RegisterFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	fs.StringVar(&f.StateDir, "state", DefaultStateDir, "identity state directory")
	fs.StringVar(&f.Site, "site", "otgate.local", "SPIFFE trust domain of the gate's IDs (used when an identity is created)")
	fs.StringVar(&f.TPMDevice, "tpm", DefaultTPMDevice, "TPM character device")
	fs.StringVar(&f.TPMSocket, "tpm-socket", "", "swtpm unixio socket instead of -tpm (development hosts)")
	fs.BoolVar(&f.DevMode, "dev", false, "DEV MODE: software key in the state directory, no TPM (never in production)")
	fs.BoolVar(&f.AllowVolatileState, "allow-volatile-state", false, "allow creating a TPM identity in a state directory on a tmpfs (lost at power-off; the next boot then refuses as for a lost /perm): tests only")
	fs.StringVar(&f.PCRs, "pcrs", "", fmt.Sprintf("board PCRs (SHA-256) the data key is sealed to besides PCR %d, comma separated (used when an identity is created)", MeasuredPCR))
	return f
}

// Config builds the identity configuration.
func (f *Flags) Config(create bool, log io.Writer) (Config, error) {
	cfg := Config{StateDir: f.StateDir, Site: f.Site, DevMode: f.DevMode, Create: create, Log: log,
		RequirePersistentState: !f.AllowVolatileState}
	switch {
	case f.DevMode:
	case f.TPMSocket != "":
		cfg.TPM = SocketTPM(f.TPMSocket)
	case f.TPMDevice != "":
		cfg.TPM = DeviceTPM(f.TPMDevice)
	}
	pcrs, err := ParsePCRs(f.PCRs)
	if err != nil {
		return Config{}, fmt.Errorf("-pcrs: %w", err)
	}
	cfg.BoardPCRs = pcrs
	return cfg, nil
}

// Open opens the identity the flags name (Config, then Open).
func (f *Flags) Open(create bool, log io.Writer) (*Identity, error) {
	cfg, err := f.Config(create, log)
	if err != nil {
		return nil, err
	}
	return Open(cfg)
}

// ParsePCRs parses "0,2,7".
func ParsePCRs(s string) ([]uint, error) {
	var out []uint
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(p), 10, 8)
		if err != nil || n > 23 {
			return nil, fmt.Errorf("bad PCR %q in %q (want numbers 0-23)", p, s)
		}
		if err := checkBoardPCR(uint(n)); err != nil {
			return nil, fmt.Errorf("%q: %w", s, err)
		}
		out = append(out, uint(n))
	}
	return out, nil
}

// ParseAllow parses an allow-list "0=admin,1001=proxy" (uid=service).
func ParseAllow(s string) (map[uint32]string, error) {
	out := map[uint32]string{}
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		uidStr, name, ok := strings.Cut(e, "=")
		uid, err := strconv.ParseUint(uidStr, 10, 32)
		if !ok || err != nil || !secretNameRE.MatchString(name) {
			return nil, fmt.Errorf("bad allow-list entry %q in %q (want uid=service, service: %s)", e, s, serviceNameDescription)
		}
		if err := checkCallerName(name); err != nil {
			return nil, fmt.Errorf("allow-list entry %q in %q: %w", e, s, err)
		}
		if prev, dup := out[uint32(uid)]; dup {
			return nil, fmt.Errorf("allow-list %q names uid %d twice (%s, %s)", s, uid, prev, name)
		}
		out[uint32(uid)] = name
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty allow-list %q", s)
	}
	return out, nil
}
