package site

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fxamacker/cbor/v2"

	"github.com/otgate/otgate/internal/atomicfile"
)

// AppliedFile is the compiled policy's file name inside the state
// directory (/perm/policy on the device).
const AppliedFile = "applied.cbor"

// DefaultStateDir is where the device keeps the applied policy.
const DefaultStateDir = "/perm/policy"

// FormatVersion is the version of the compiled document.
const FormatVersion = 1

// magic opens every compiled document.
const magic = "otgate-policy"

// Named errors of LoadApplied.
var (
	// ErrNoPolicy: no policy has been applied yet (the file is absent).
	ErrNoPolicy = errors.New("no applied policy")
	// ErrCorruptPolicy: the file exists but is not an intact compiled
	// policy of a known version. It is never replaced by a default.
	ErrCorruptPolicy = errors.New("corrupt applied policy")
)

// Applied is the compiled policy the services read.
type Applied struct {
	Version int `cbor:"1,keyasint"`
	// Source is the site file's base name; SourceSHA256 the sha256 of its
	// exact bytes.
	Source       string   `cbor:"2,keyasint"`
	SourceSHA256 [32]byte `cbor:"3,keyasint"`
	Site         Site     `cbor:"4,keyasint"`
}

// envelope carries the document with a checksum, so any corruption of
// the file is detected on load.
type envelope struct {
	Magic  string   `cbor:"1,keyasint"`
	Body   []byte   `cbor:"2,keyasint"`
	SHA256 [32]byte `cbor:"3,keyasint"`
}

var (
	encMode = func() cbor.EncMode {
		m, err := cbor.CoreDetEncOptions().EncMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
	decMode = func() cbor.DecMode {
		m, err := cbor.DecOptions{ExtraReturnErrors: cbor.ExtraDecErrorUnknownField, DupMapKey: cbor.DupMapKeyEnforcedAPF}.DecMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
)

// Compile turns a validated Site into the deterministic CBOR document
// stored on the device: the same site file always gives the same bytes.
func Compile(s *Site, sourceName string, source []byte) ([]byte, error) {
	body, err := encMode.Marshal(Applied{
		Version:      FormatVersion,
		Source:       filepath.Base(sourceName),
		SourceSHA256: sha256.Sum256(source),
		Site:         *s,
	})
	if err != nil {
		return nil, fmt.Errorf("site: compile %s: %w", sourceName, err)
	}
	doc, err := encMode.Marshal(envelope{Magic: magic, Body: body, SHA256: sha256.Sum256(body)})
	if err != nil {
		return nil, fmt.Errorf("site: compile %s: %w", sourceName, err)
	}
	return doc, nil
}

// Decode checks and decodes a compiled document.
func Decode(doc []byte) (*Applied, error) {
	var env envelope
	if err := decMode.Unmarshal(doc, &env); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptPolicy, err)
	}
	if env.Magic != magic {
		return nil, fmt.Errorf("%w: not an otgate policy (magic %q)", ErrCorruptPolicy, env.Magic)
	}
	if sum := sha256.Sum256(env.Body); !bytes.Equal(sum[:], env.SHA256[:]) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorruptPolicy)
	}
	var a Applied
	if err := decMode.Unmarshal(env.Body, &a); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptPolicy, err)
	}
	if a.Version != FormatVersion {
		return nil, fmt.Errorf("%w: format version %d (this build reads %d)", ErrCorruptPolicy, a.Version, FormatVersion)
	}
	return &a, nil
}

// Store writes a compiled document atomically as dir/applied.cbor,
// creating dir if needed. The file is group-readable (the policy holds no
// secrets): on the appliance dir is set-group-ID to the proxy's group, so
// the unprivileged proxy reads every policy applied later too.
func Store(dir string, doc []byte) error {
	if _, err := Decode(doc); err != nil {
		return fmt.Errorf("site: refusing to store: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("site: %w", err)
	}
	path := filepath.Join(dir, AppliedFile)
	if err := atomicfile.Write(path, doc, 0o640); err != nil {
		return fmt.Errorf("site: %w", err)
	}
	return nil
}

// LoadApplied reads the compiled policy at path. A missing file is
// ErrNoPolicy; anything unreadable is ErrCorruptPolicy.
func LoadApplied(path string) (*Applied, error) {
	doc, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("site: %s: %w", path, ErrNoPolicy)
	}
	if err != nil {
		return nil, fmt.Errorf("site: %w", err)
	}
	a, err := Decode(doc)
	if err != nil {
		return nil, fmt.Errorf("site: %s: %w", path, err)
	}
	return a, nil
}
