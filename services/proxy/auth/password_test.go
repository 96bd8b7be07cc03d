package auth

import (
	"bytes"
	"testing"
)

// The unknown-user hash runs the same Argon2id work as a real user's
// (same parameters, a salt and hash of the real sizes) and matches no
// password, not even an empty one; two stores get different ones.
func TestDummyHash(t *testing.T) {
	d, err := dummyHash(testArgon2)
	if err != nil {
		t.Fatal(err)
	}
	real, err := hashPassword([]byte("correct horse"), testArgon2)
	if err != nil {
		t.Fatal(err)
	}
	if d.Params != real.Params || len(d.Salt) != len(real.Salt) || len(d.Hash) != len(real.Hash) {
		t.Errorf("dummy %+v (salt %d, hash %d bytes) differs in cost from a real hash %+v (salt %d, hash %d bytes)",
			d.Params, len(d.Salt), len(d.Hash), real.Params, len(real.Salt), len(real.Hash))
	}
	for _, pw := range []string{"", "correct horse", "otgate timing equaliser"} {
		if d.verify([]byte(pw)) {
			t.Errorf("dummy hash verified %q", pw)
		}
	}
	if !real.verify([]byte("correct horse")) {
		t.Error("control: a real hash does not verify its own password")
	}
	d2, err := dummyHash(testArgon2)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(d.Salt, d2.Salt) || bytes.Equal(d.Hash, d2.Hash) {
		t.Error("two dummy hashes share salt or hash bytes")
	}
	if _, err := dummyHash(Argon2Params{}); err == nil {
		t.Error("dummyHash(zero params) = nil error")
	}
}
