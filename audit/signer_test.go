package audit

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"errors"
	"io"
	"sync/atomic"
	"testing"
)

// flakySigner fails while broken is set; wrong makes it sign with another key.
type flakySigner struct {
	key    *ecdsa.PrivateKey
	other  *ecdsa.PrivateKey
	broken atomic.Bool
	wrong  atomic.Bool
}

func (s *flakySigner) Public() crypto.PublicKey { return &s.key.PublicKey }

func (s *flakySigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	if s.broken.Load() {
		return nil, errors.New("TPM busy")
	}
	if s.wrong.Load() {
		return s.other.Sign(r, d, o)
	}
	return s.key.Sign(r, d, o)
}

func TestSignerFailureKeepsLogUsable(t *testing.T) {
	dir := t.TempDir()
	s := &flakySigner{key: newKey(t), other: newKey(t)}
	w := openLog(t, dir, s)
	writeSession(t, w, "a", 1)
	s.broken.Store(true)
	if _, err := w.AppendBuffered(Event{Type: "lockout", User: "mallory"}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Checkpoint(context.Background()); err == nil {
		t.Fatal("Checkpoint with a failing signer succeeded")
	}
	s.broken.Store(false)
	s.wrong.Store(true)
	if _, err := w.Checkpoint(context.Background()); err == nil {
		t.Fatal("Checkpoint accepted a signature that does not verify against the signer's public key")
	}
	if _, err := w.Append(context.Background(), Event{Type: "refusal", User: "bob"}); err != nil {
		t.Fatalf("append after signer failures: %v", err)
	}
	s.wrong.Store(false)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(dir, Trust{PublicKey: &s.key.PublicKey})
	if err != nil || rep.Unsigned != 0 {
		t.Fatalf("after the signer recovered: %+v %v", rep, err)
	}
}
