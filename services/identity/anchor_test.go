package identity

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/otgate/otgate/services/identity/api"
)

// The audit anchor counter through the socket, on swtpm: never advanced
// at first; the proxy advances it from the value it read, once per value
// (a repeated request does not advance it twice, a stale one not at all);
// nobody else may advance it; it keeps its value across a restart of the
// service.
func TestAuditAnchorCounter(t *testing.T) {
	_, opener := startTPM(t)
	cfg := testConfig(t, opener)
	id, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	proxySock := serve(t, id, -1, map[uint32]string{uint32(os.Getuid()): "proxy"})
	c, err := api.Dial(proxySock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	if v, defined, err := c.AuditAnchor(); err != nil || defined {
		t.Fatalf("fresh TPM: anchor %d, defined %v, %v; want never advanced", v, defined, err)
	}
	first, err := c.AdvanceAuditAnchor(0, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first value %d", first)
	if v, defined, err := c.AuditAnchor(); err != nil || !defined || v != first {
		t.Fatalf("after the first advance: %d, %v, %v; want %d", v, defined, err, first)
	}
	second, err := c.AdvanceAuditAnchor(first, true)
	if err != nil || second != first+1 {
		t.Fatalf("advance from %d: %d, %v; want %d", first, second, err, first+1)
	}
	// The same request again (as a client whose connection broke before
	// the answer sends it): the counter is not advanced twice.
	if again, err := c.AdvanceAuditAnchor(first, true); err != nil || again != second {
		t.Fatalf("repeated advance from %d: %d, %v; want %d, unchanged", first, again, err, second)
	}
	// A value the counter never held: left alone, its value answered.
	if stale, err := c.AdvanceAuditAnchor(second+5, true); err != nil || stale != second {
		t.Fatalf("advance from %d: %d, %v; want %d, unchanged", second+5, stale, err, second)
	}
	// "Never advanced" when it was: left alone too.
	if v, err := c.AdvanceAuditAnchor(0, false); err != nil || v != second {
		t.Fatalf("advance from 'never advanced': %d, %v; want %d, unchanged", v, err, second)
	}

	// Another service reads it but may not advance it.
	adminSock := serve(t, id, -1, map[uint32]string{uint32(os.Getuid()): "admin"})
	a, err := api.Dial(adminSock)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if v, defined, err := a.AuditAnchor(); err != nil || !defined || v != second {
		t.Fatalf("admin read: %d, %v, %v; want %d", v, defined, err, second)
	}
	if _, err := a.AdvanceAuditAnchor(second, true); !errors.Is(err, api.ErrDenied) {
		t.Fatalf("admin advance: %v, want denied", err)
	}
	if v, _, _ := a.AuditAnchor(); v != second {
		t.Fatalf("a refused advance moved the counter to %d", v)
	}
	c.Close()
	a.Close()
	id.Close()

	cfg.Create = false
	id, err = Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()
	if v, defined, err := id.AuditAnchor(); err != nil || !defined || v != second {
		t.Fatalf("after a restart: %d, %v, %v; want %d", v, defined, err, second)
	}
}

// Something else at the anchor's NV index (an ordinary index) is never
// taken for the counter: reading and advancing fail and say so.
func TestAuditAnchorForeignIndex(t *testing.T) {
	_, opener := startTPM(t)
	withTPMConn(t, opener, func(tt transport.TPM) { defineNV(t, tt, AnchorNVIndex, 8, make([]byte, 8)) })
	id, err := Open(testConfig(t, opener))
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()
	if _, _, err := id.AuditAnchor(); err == nil || !strings.Contains(err.Error(), "is not the audit anchor counter") {
		t.Fatalf("read: %v, want 'not the audit anchor counter'", err)
	}
	if _, err := id.AdvanceAuditAnchor(0, false); err == nil || !strings.Contains(err.Error(), "is not the audit anchor counter") {
		t.Fatalf("advance: %v, want 'not the audit anchor counter'", err)
	}
}

// In dev mode there is no TPM and no counter: the socket says no-tpm.
func TestAuditAnchorDevMode(t *testing.T) {
	id, err := Open(Config{StateDir: filepath.Join(t.TempDir(), "identity"), Site: "lab", DevMode: true, Create: true, Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()
	c, err := api.Dial(serve(t, id, -1, map[uint32]string{uint32(os.Getuid()): "proxy"}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := c.AuditAnchor(); !errors.Is(err, api.ErrNoTPM) {
		t.Fatalf("read in dev mode: %v, want no-tpm", err)
	}
	if _, err := c.AdvanceAuditAnchor(0, false); !errors.Is(err, api.ErrNoTPM) {
		t.Fatalf("advance in dev mode: %v, want no-tpm", err)
	}
}
