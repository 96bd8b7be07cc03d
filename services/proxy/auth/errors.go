package auth

import (
	"errors"
	"fmt"
)

// Sentinel errors; a *StoreError wraps one of the first three.
var (
	// ErrStoreCorrupt: the store file is not a store (truncated, flipped
	// bytes, not CBOR, unknown version).
	ErrStoreCorrupt = errors.New("user store corrupt")
	// ErrStoreUndecryptable: the file is well formed but does not decrypt
	// with the sealed store key (a different gate's or TPM's key).
	ErrStoreUndecryptable = errors.New("user store does not decrypt with this gate's store key")
	// ErrStoreKey: the sealed store key is missing or malformed.
	ErrStoreKey = errors.New("user store key unavailable")
	// ErrStoreBusy: another process has the store open.
	ErrStoreBusy = errors.New("user store in use by another process")

	ErrUnknownUser = errors.New("no such user")
	ErrUserExists  = errors.New("user already exists")
	ErrBadName     = errors.New("bad user name")
	ErrBadPassword = errors.New("unacceptable password")
	// ErrNotLocked: an unlock found nothing to lift (no lock, no failed
	// logins); nothing was changed.
	ErrNotLocked = errors.New("not locked")
)

// StoreError names the store file and what is wrong with it. The store is
// never replaced because of it.
type StoreError struct {
	Path    string
	Kind    error
	Problem string
	Err     error
}

func (e *StoreError) Error() string {
	msg := fmt.Sprintf("%s: %v: %s", e.Path, e.Kind, e.Problem)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg + " (the store was NOT replaced; restore it from a backup, or move it aside to start with no users)"
}

func (e *StoreError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}
