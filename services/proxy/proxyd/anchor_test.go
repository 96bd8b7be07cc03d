package proxyd

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/services/identity/api"
	"github.com/otgate/otgate/services/identity/swtpmtest"
)

// On a TPM gate (swtpm, the real identity service) the proxy anchors its
// audit log to the TPM's counter: each run records and advances it, the
// log verifies against the counter, and an audit directory put back from
// an earlier copy (a perfectly good, sealed chain) is caught twice: Verify
// against the counter fails it, and the next proxy start records an
// anchor-mismatch in the log and says so in its own log.
func TestAuditLogAnchoredToTPM(t *testing.T) {
	dir, idSock, c := tpmIdentity(t)
	counter := func() uint64 {
		t.Helper()
		v, defined, err := c.AuditAnchor()
		if err != nil || !defined {
			t.Fatalf("anchor counter: %d, %v, %v", v, defined, err)
		}
		return v
	}
	verify := func(auditDir string, anchor uint64) (*audit.Report, error) {
		t.Helper()
		cert, err := c.TLSCertificate()
		if err != nil {
			t.Fatal(err)
		}
		return audit.Verify(auditDir, audit.Trust{PublicKey: cert.Leaf.PublicKey, RequireSealed: true, Anchor: &anchor})
	}

	auditDir, _ := runAndStop(t, dir, idSock)
	first := counter()
	rep, err := verify(auditDir, first)
	if err != nil || !rep.HasAnchor || rep.Anchor != first {
		t.Fatalf("first run: %+v, %v; want the log anchored at the counter's %d", rep, err, first)
	}
	old := filepath.Join(t.TempDir(), "audit-copy")
	copyLogDir(t, auditDir, old)

	runAndStop(t, dir, idSock)
	now := counter()
	if now != first+2 {
		t.Fatalf("counter %d after a second run, want %d (open and close)", now, first+2)
	}
	if _, err := verify(old, now); !errors.Is(err, audit.ErrAnchor) || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("the earlier copy against the counter: %v, want ErrAnchor (rolled back)", err)
	}

	// Someone with the disk puts the earlier copy back.
	if err := os.RemoveAll(auditDir); err != nil {
		t.Fatal(err)
	}
	copyLogDir(t, old, auditDir)
	_, lg := runAndStop(t, dir, idSock)
	if !strings.Contains(lg, "ANCHOR MISMATCH") || !strings.Contains(lg, "rolled back") {
		t.Fatalf("the proxy's log does not report the rollback:\n%s", lg)
	}
	rep, err = verify(auditDir, counter())
	if err != nil {
		t.Fatalf("after recording the mismatch the log is anchored again: %v", err)
	}
	if len(rep.AnchorAlarms) != 1 || !strings.Contains(rep.AnchorAlarms[0].Reason, "rolled back") {
		t.Fatalf("the log's alarms: %+v, want the rollback", rep.AnchorAlarms)
	}
}

// With -audit-anchor-every the running proxy advances the TPM counter
// between its open and its close, each advance recorded in the log first:
// the sealed log verifies against the counter, and a copy taken while it
// ran does not.
func TestAuditAnchorAdvancesWhileRunning(t *testing.T) {
	dir, idSock, c := tpmIdentity(t)
	auditDir, _ := runAndStop(t, dir, idSock)
	before, _, err := c.AuditAnchor()
	if err != nil {
		t.Fatal(err)
	}
	copied := filepath.Join(t.TempDir(), "audit-copy")
	copyLogDir(t, auditDir, copied)

	runFor(t, dir, idSock, 3*time.Second, func(o *options) { o.auditAnchorEvery = 250 * time.Millisecond })
	after, _, err := c.AuditAnchor()
	if err != nil {
		t.Fatal(err)
	}
	if after < before+4 {
		t.Fatalf("counter %d -> %d over a 3 s run advancing every 250 ms; want the open, the close and periodic advances", before, after)
	}
	cert, err := c.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(auditDir, audit.Trust{PublicKey: cert.Leaf.PublicKey, RequireSealed: true, Anchor: &after})
	if err != nil || rep.Anchor != after {
		t.Fatalf("the sealed log against the counter %d: %+v, %v", after, rep, err)
	}
	if _, err := audit.Verify(copied, audit.Trust{PublicKey: cert.Leaf.PublicKey, Anchor: &after}); !errors.Is(err, audit.ErrAnchor) {
		t.Fatalf("the earlier copy: %v, want ErrAnchor", err)
	}
}

func TestAuditAnchorEveryFlag(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		want time.Duration
		bad  bool
	}{{"", 6 * time.Hour, false}, {"-audit-anchor-every=0", 0, false}, {"-audit-anchor-every=15m", 15 * time.Minute, false},
		{"-audit-anchor-every=1m", 0, true}, {"-audit-anchor-every=-1h", 0, true}} {
		args := []string{"-site", "s.yaml"}
		if tc.arg != "" {
			args = append(args, tc.arg)
		}
		o, err := parseFlags(flag.NewFlagSet("otgate-proxy", flag.ContinueOnError), args)
		switch {
		case tc.bad && (err == nil || !strings.Contains(err.Error(), "-audit-anchor-every")):
			t.Errorf("%s: %v, want an error naming the flag", tc.arg, err)
		case !tc.bad && (err != nil || o.auditAnchorEvery != tc.want):
			t.Errorf("%s: %+v, %v; want %v", tc.arg, o, err, tc.want)
		}
	}
}

// tpmIdentity starts swtpm and the identity service on it and returns the
// state directory, the service's socket and a client of it.
func tpmIdentity(t *testing.T) (dir, idSock string, c *api.Client) {
	t.Helper()
	sw := swtpmtest.Start(t, "")
	dir = t.TempDir()
	idSock = filepath.Join(shortSockDir(t), "id.sock")
	identityService(t, sw.Socket, filepath.Join(dir, "identity"), idSock, "")
	c, err := api.Dial(idSock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return dir, idSock, c
}

// copyLogDir copies a log directory (as someone with the disk would keep
// a copy of it).
func copyLogDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}
