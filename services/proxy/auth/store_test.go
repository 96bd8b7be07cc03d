package auth

import (
	"bytes"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/otgate/otgate/services/proxy/auth/authtest"
)

func TestStoreSurvivesRestart(t *testing.T) {
	e := newEnv(t, nil)
	secret := e.add("alice")
	e.add("bob")
	l := e.mustLogin("alice", testPassword, e.oathtool(secret, 0), srcA)
	if err := e.s.Disable("bob"); err != nil {
		t.Fatal(err)
	}
	before := e.s.Users()
	e.restart()
	after := e.s.Users()
	if len(after) != 2 || after[0].Name != "alice" || after[1].Name != "bob" {
		t.Fatalf("after restart: %+v", after)
	}
	for i := range before {
		b, a := before[i], after[i]
		if b.Name != a.Name || b.Pending != a.Pending || b.Disabled != a.Disabled || b.Generation != a.Generation ||
			!b.Created.Equal(a.Created) || !b.LastLogin.Equal(a.LastLogin) {
			t.Errorf("user %s changed across restart:\n before %+v\n after  %+v", b.Name, b, a)
		}
	}
	if err := e.s.CheckCredential("alice", l.Generation, nil); err != nil {
		t.Error(err)
	}
	// The file holds no secret in the clear.
	raw, err := os.ReadFile(e.s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("alice")) || bytes.Contains(raw, []byte("engineer")) {
		t.Error("store file holds user data in the clear")
	}
}

func TestStoreOfAnotherTPM(t *testing.T) {
	e := newEnv(t, nil)
	e.add("alice")
	e.s.Close()
	other := authtest.StartIdentity(t)

	// The other gate has no store key: the store is not replaced.
	_, err := Open(Config{Dir: e.dir, Sealer: other.Client, Argon2: testArgon2})
	if !errors.Is(err, ErrStoreKey) {
		t.Fatalf("open with another identity: %v, want ErrStoreKey", err)
	}
	var se *StoreError
	if !errors.As(err, &se) || se.Path != filepath.Join(e.dir, StoreFile) {
		t.Errorf("error does not name the file: %v", err)
	}

	// The other gate has a store key of its own: the file does not decrypt.
	otherDir := filepath.Join(t.TempDir(), "other")
	s2, err := Open(Config{Dir: otherDir, Sealer: other.Client, Argon2: testArgon2})
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	copyFile(t, filepath.Join(e.dir, StoreFile), filepath.Join(otherDir, StoreFile))
	_, err = Open(Config{Dir: otherDir, Sealer: other.Client, Argon2: testArgon2})
	if !errors.Is(err, ErrStoreUndecryptable) {
		t.Fatalf("open a copied store: %v, want ErrStoreUndecryptable", err)
	}

	// And the original gate still opens it.
	e.open()
	if _, err := e.s.User("alice"); err != nil {
		t.Error(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptStoreIsANamedError(t *testing.T) {
	e := newEnv(t, nil)
	e.add("alice")
	e.s.Close()
	path := filepath.Join(e.dir, StoreFile)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x01
		return b
	}
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrStoreCorrupt},
		{"truncated", good[:len(good)/2], ErrStoreCorrupt},
		{"garbage", []byte("this is not a store"), ErrStoreCorrupt},
		{"first byte flipped", flip(0), ErrStoreCorrupt},
		{"ciphertext byte flipped", flip(len(good) - 20), ErrStoreUndecryptable},
		{"last byte flipped", flip(len(good) - 1), ErrStoreUndecryptable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := os.WriteFile(path, c.data, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(e.cfg)
			if err == nil {
				s.Close()
				t.Fatal("corrupt store opened")
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
			got, _ := os.ReadFile(path)
			if !bytes.Equal(got, c.data) {
				t.Error("the corrupt file was changed")
			}
		})
	}
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	e.open()
	if _, err := e.s.User("alice"); err != nil {
		t.Error(err)
	}
}

func TestStoreBusy(t *testing.T) {
	e := newEnv(t, nil)
	if _, err := Open(e.cfg); !errors.Is(err, ErrStoreBusy) {
		t.Fatalf("second open: %v, want ErrStoreBusy", err)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	e := newEnv(t, nil)
	e.add("alice")
	before, _ := os.ReadFile(e.s.Path())
	for _, c := range []struct {
		name, pw string
		roles    []string
	}{
		{"Alice", testPassword, nil},
		{"a/b", testPassword, nil},
		{"", testPassword, nil},
		{"bob", "short", nil},
		{"bob", testPassword, []string{"Bad Role"}},
		{"alice", testPassword, nil}, // exists
	} {
		if _, err := e.s.AddUser(c.name, []byte(c.pw), c.roles); err == nil {
			t.Errorf("AddUser(%q, %q, %v) accepted", c.name, c.pw, c.roles)
		}
	}
	for _, f := range []func() error{
		func() error { return e.s.Unlock("nobody") },
		func() error { return e.s.Disable("nobody") },
		func() error { _, err := e.s.Revoke("nobody", "test"); return err },
		func() error { return e.s.SetPassword("alice", []byte("short")) },
	} {
		if err := f(); err == nil {
			t.Error("bad admin call accepted")
		}
	}
	after, _ := os.ReadFile(e.s.Path())
	if !bytes.Equal(before, after) {
		t.Error("refused calls changed the store file")
	}
}

func TestRevocation(t *testing.T) {
	var notified []string
	e := newEnv(t, func(c *Config) { c.OnRevoke = func(u string) { notified = append(notified, u) } })
	secret := e.add("alice")
	l := e.mustLogin("alice", testPassword, e.oathtool(secret, 0), srcA)
	serial := big.NewInt(0xc0ffee)
	if err := e.s.RevokeCertificate("alice", serial, e.clock.Now().Add(time.Hour), "logout"); err != nil {
		t.Fatal(err)
	}
	if err := e.s.CheckCredential("alice", l.Generation, serial); !errors.Is(err, ErrCredentialRevoked) {
		t.Errorf("revoked serial: %v", err)
	}
	if err := e.s.CheckCredential("alice", l.Generation, big.NewInt(7)); err != nil {
		t.Errorf("another serial: %v", err)
	}
	e.restart()
	if err := e.s.CheckCredential("alice", l.Generation, serial); !errors.Is(err, ErrCredentialRevoked) {
		t.Errorf("revoked serial after restart: %v", err)
	}
	// Past its expiry the entry is dropped at the next write.
	e.clock.Add(2 * time.Hour)
	gen, err := e.s.Revoke("alice", "admin revoke")
	if err != nil {
		t.Fatal(err)
	}
	if len(e.s.data.Revoked) != 0 {
		t.Errorf("expired revocation kept: %+v", e.s.data.Revoked)
	}
	if err := e.s.CheckCredential("alice", l.Generation, big.NewInt(7)); !errors.Is(err, ErrCredentialRevoked) {
		t.Errorf("old generation after Revoke: %v", err)
	}
	if err := e.s.CheckCredential("alice", gen, nil); err != nil {
		t.Errorf("new generation: %v", err)
	}
	// A user removed and added again never matches old certificates.
	if err := e.s.RemoveUser("alice"); err != nil {
		t.Fatal(err)
	}
	e.add("alice")
	u, _ := e.s.User("alice")
	if u.Generation <= gen {
		t.Errorf("re-added user has generation %d, old certificates had up to %d", u.Generation, gen)
	}
	if len(notified) != 3 {
		t.Errorf("OnRevoke calls %v, want 3 (serial, revoke, remove)", notified)
	}
}
