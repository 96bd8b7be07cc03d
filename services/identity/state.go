package identity

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fxamacker/cbor/v2"
)

// Files of the state directory.
const (
	KeyFile        = "key.cbor"         // device key blobs (or the dev-mode software key)
	SealFile       = "seal.cbor"        // sealed data key and the PCR values it is bound to
	NextSealFile   = "seal-next.cbor"   // the same data key sealed for the next boot after an authorized policy apply
	DeviceFile     = "device.cbor"      // site, serial, device certificate, EK inventory
	WorkloadCAFile = "workload-ca.cbor" // workload CA certificate (its key is a named secret)
	SecretsDir     = "secrets"          // secrets/<service>/<name>.cbor
)

// requiredFiles must all exist in an initialised state directory.
var requiredFiles = []string{KeyFile, SealFile, DeviceFile, WorkloadCAFile}

// Sentinel errors for state problems; a *StateError wraps one of them.
var (
	ErrStateMissing = errors.New("identity state file missing")
	ErrStateCorrupt = errors.New("identity state file corrupt")
	// ErrNoIdentity: the state directory holds no identity and creating one
	// was not asked for.
	ErrNoIdentity = errors.New("no device identity")
)

// StateError names the state file that is wrong and what is wrong with it.
// The identity is never replaced because of it: only `otgate identity reset`
// creates a new one.
type StateError struct {
	Path    string
	Kind    error // ErrStateMissing or ErrStateCorrupt
	Problem string
	Err     error
}

func (e *StateError) Error() string {
	msg := fmt.Sprintf("%s: %v: %s", e.Path, e.Kind, e.Problem)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg + " (the device identity was NOT replaced; restore the file from a backup, or run `otgate identity reset -yes` to create a new identity, which makes this a different device)"
}

func (e *StateError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

func corrupt(path, problem string, err error) error {
	return &StateError{Path: path, Kind: ErrStateCorrupt, Problem: problem, Err: err}
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
		m, err := cbor.DecOptions{ExtraReturnErrors: cbor.ExtraDecErrorUnknownField}.DecMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
)

// stateVersion is the format version of every state file.
const stateVersion = 1

// readState decodes the CBOR file dir/name into v, which must have a
// Version field checked by the caller through versioned.
func readState(dir, name string, v versioned) error {
	path := filepath.Join(dir, name)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &StateError{Path: path, Kind: ErrStateMissing, Problem: "file does not exist"}
	}
	if err != nil {
		return fmt.Errorf("identity: read %s: %w", path, err)
	}
	if len(b) == 0 {
		return corrupt(path, "file is empty", nil)
	}
	if err := decMode.Unmarshal(b, v); err != nil {
		return corrupt(path, "not a valid CBOR record", err)
	}
	if got := v.version(); got != stateVersion {
		return corrupt(path, fmt.Sprintf("format version %d, this build reads version %d", got, stateVersion), nil)
	}
	return nil
}

type versioned interface{ version() int }

// writeState encodes v deterministically and writes it atomically.
func writeState(dir, name string, v any) error {
	b, err := encMode.Marshal(v)
	if err != nil {
		return fmt.Errorf("identity: encode %s: %w", name, err)
	}
	return writeFileAtomic(filepath.Join(dir, name), b, 0o600)
}

// writeFileAtomic writes data to path through a temporary file, fsyncs it,
// renames it into place and fsyncs the directory: after a power cut the
// file holds either the old or the new content.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("identity: write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("identity: write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("identity: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("identity: fsync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("identity: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("identity: rename %s: %w", path, err)
	}
	ok = true
	return syncDir(dir)
}

// dirSynced, when set (tests), is told each directory syncDir synced.
var dirSynced func(dir string)

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("identity: fsync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("identity: fsync dir %s: %w", dir, err)
	}
	if dirSynced != nil {
		dirSynced(dir)
	}
	return nil
}

// stateExists reports whether dir holds an identity: false when none of the
// required files exists (first boot), true when all do, and a
// *StateError naming the first missing file when only some do.
func stateExists(dir string) (bool, error) {
	var present, missing []string
	for _, f := range requiredFiles {
		_, err := os.Stat(filepath.Join(dir, f))
		switch {
		case err == nil:
			present = append(present, f)
		case errors.Is(err, os.ErrNotExist):
			missing = append(missing, f)
		default:
			return false, fmt.Errorf("identity: %w", err)
		}
	}
	if len(present) == 0 {
		return false, nil
	}
	if len(missing) > 0 {
		return false, &StateError{Path: filepath.Join(dir, missing[0]), Kind: ErrStateMissing,
			Problem: fmt.Sprintf("file does not exist, but %v do", present)}
	}
	return true, nil
}
