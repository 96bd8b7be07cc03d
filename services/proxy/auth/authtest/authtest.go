// Package authtest runs the real identity service for the user store and
// user CA tests: a fresh swtpm (swtpmtest), identity.Open on it and the
// local API server on a private socket, with the test's uid acting as the
// "proxy" service. Everything is stopped in t.Cleanup.
package authtest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/otgate/otgate/services/identity"
	"github.com/otgate/otgate/services/identity/api"
	"github.com/otgate/otgate/services/identity/swtpmtest"
)

// Site is the trust domain of the test identities.
const Site = "plant-1.example"

// Identity is a running identity service.
type Identity struct {
	TPM    *swtpmtest.TPM
	Socket string
	// Client is connected as the service StartIdentityAs was given.
	Client *api.Client
	// Device is the service's identity itself, for what no caller of the
	// API may do (sign a certificate with the device key, as an earlier
	// release did).
	Device *identity.Identity
}

// StartIdentity starts swtpm, creates a device identity on it and serves
// its API, the test's uid acting as the "proxy" service. The test skips
// when swtpm is not installed.
func StartIdentity(tb testing.TB) *Identity {
	tb.Helper()
	return StartIdentityAs(tb, "proxy")
}

// StartIdentityAs is StartIdentity with the test's uid acting as service.
func StartIdentityAs(tb testing.TB, service string) *Identity {
	tb.Helper()
	tpm := swtpmtest.Start(tb, "")
	id, err := identity.Open(identity.Config{
		StateDir:  filepath.Join(tb.TempDir(), "identity"),
		Site:      Site,
		TPM:       identity.SocketTPM(tpm.Socket),
		BoardPCRs: []uint{0, 7},
		Create:    true,
		Log:       logWriter{tb},
	})
	if err != nil {
		tb.Fatalf("open identity: %v", err)
	}
	tb.Cleanup(func() { id.Close() })
	dir, err := os.MkdirTemp("", "idsock")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "identity.sock")
	srv, err := identity.Listen(id, identity.ServerConfig{Socket: sock, GID: -1,
		Allow: map[uint32]string{uint32(os.Getuid()): service}})
	if err != nil {
		tb.Fatalf("identity listen: %v", err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(); close(done) }()
	tb.Cleanup(func() { srv.Close(); <-done })
	c := Dial(tb, sock)
	return &Identity{TPM: tpm, Socket: sock, Client: c, Device: id}
}

// Dial opens another client connection (closed in t.Cleanup).
func Dial(tb testing.TB, sock string) *api.Client {
	tb.Helper()
	c, err := api.Dial(sock)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

type logWriter struct{ tb testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.tb.Logf("%s", p)
	return len(p), nil
}
