package proxyd

import (
	"context"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/internal/syncbuf"
	"github.com/otgate/otgate/services/identity"
	"github.com/otgate/otgate/services/identity/swtpmtest"
	"github.com/otgate/otgate/services/proxy"
	"github.com/otgate/otgate/services/proxy/auth"
)

// A gate whose identity service runs in dev mode (no TPM, software key):
// the proxy learns it from the identity status and every record of its
// audit log, checkpoints included, is marked dev mode.
func TestDevModeIdentityMarksAuditRecords(t *testing.T) {
	dir := t.TempDir()
	idSock := filepath.Join(shortSockDir(t), "id.sock")
	id, err := identity.Open(identity.Config{StateDir: filepath.Join(dir, "identity"), Site: "lab.test", DevMode: true, Create: true, Log: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := identity.Listen(id, identity.ServerConfig{Socket: idSock, GID: -1, Allow: map[uint32]string{uint32(os.Geteuid()): "proxy"}})
	if err != nil {
		id.Close()
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close(); id.Close() })
	auditDir, lg := runAndStop(t, dir, idSock)
	if !strings.Contains(lg, "DEV MODE: the identity service has no TPM") {
		t.Errorf("the proxy's log does not say dev mode:\n%s", lg)
	}
	dev, total := devRecords(t, auditDir)
	if dev != total {
		t.Fatalf("%d of %d records marked dev mode, want all", dev, total)
	}
	rep, err := audit.Verify(auditDir, audit.Trust{PublicKey: id.Signer().Public()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.DevRecords != rep.Records || rep.DevSummary() == "" {
		t.Fatalf("verify: %d of %d records dev (%q)", rep.DevRecords, rep.Records, rep.DevSummary())
	}
}

// The same with a TPM (swtpm): no record is marked.
func TestTPMIdentityAuditRecordsNotMarked(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	dir := t.TempDir()
	idSock := filepath.Join(shortSockDir(t), "id.sock")
	identityService(t, sw.Socket, filepath.Join(dir, "identity"), idSock, "")
	auditDir, lg := runAndStop(t, dir, idSock)
	if strings.Contains(lg, "DEV MODE") {
		t.Errorf("the proxy's log says dev mode on a TPM gate:\n%s", lg)
	}
	if dev, total := devRecords(t, auditDir); dev != 0 {
		t.Fatalf("%d of %d records marked dev mode on a TPM gate", dev, total)
	}
}

func shortSockDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "proxyd") // unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// runAndStop runs the proxy on the identity socket until it listens, then
// stops it (closing the audit log), and returns the audit directory and
// the proxy's log.
func runAndStop(t *testing.T, dir, idSock string) (auditDir, logText string) {
	t.Helper()
	return runFor(t, dir, idSock, 0, nil)
}

// runFor is runAndStop that keeps the proxy running for hold after it
// listens, with set applied to its options.
func runFor(t *testing.T, dir, idSock string, hold time.Duration, set func(*options)) (auditDir, logText string) {
	t.Helper()
	sitePath := filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(sitePath, []byte(testSite), 0o600); err != nil {
		t.Fatal(err)
	}
	auditDir = filepath.Join(dir, "audit")
	var lg syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	o := &options{listen: "127.0.0.1:0", idSock: idSock, state: filepath.Join(dir, "proxy"),
		auditDir: auditDir, loader: proxy.SiteFileLoader(sitePath), source: sitePath, adminSock: filepath.Join(filepath.Dir(idSock), "admin.sock"),
		idle: time.Minute, maxSessions: 16, maxPerUser: 4, maxCert: time.Hour, maxLoginFailures: auth.DefaultMaxFailures}
	if set != nil {
		set(o)
	}
	go func() {
		done <- run(ctx, log.New(&lg, "", 0), o)
	}()
	waitLog(t, &lg, "listening on ", 60*time.Second)
	time.Sleep(hold)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("proxy ended with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("proxy still running 20 s after it was told to stop")
	}
	return auditDir, lg.String()
}

// devRecords counts the records of the log in dir marked dev mode, of all
// of them; it fails the test unless the log holds at least a rotation and
// a checkpoint.
func devRecords(t *testing.T, dir string) (dev, total int) {
	t.Helper()
	r, err := audit.NewReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	kinds := map[audit.Kind]int{}
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		kinds[e.Record.Kind]++
		total++
		if e.Record.Dev {
			dev++
		}
	}
	if kinds[audit.KindRotation] == 0 || kinds[audit.KindCheckpoint] == 0 {
		t.Fatalf("records written: %v, want at least the rotation and the closing checkpoint", kinds)
	}
	return dev, total
}
