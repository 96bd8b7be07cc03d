package proxyd

import (
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/syncbuf"

	"github.com/otgate/otgate/services/identity"
	"github.com/otgate/otgate/services/identity/swtpmtest"
	"github.com/otgate/otgate/services/proxy"
	"github.com/otgate/otgate/services/proxy/auth"
)

// waitLog waits for want in the proxy's log and returns its line.
func waitLog(t *testing.T, lg *syncbuf.Buffer, want string, within time.Duration) string {
	t.Helper()
	if !lg.WaitFor(want, within) {
		t.Fatalf("no %q in the proxy's log within %s:\n%s", want, within, lg.String())
	}
	s := lg.String()
	line := s[strings.Index(s, want):]
	if i := strings.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	return line
}

const testSite = `site: lab.test
zones:
  - name: cell
    owner: ot@lab.example
    mode: enforce
    interface: eth1
    subnet: 10.99.0.0/24
    gate_address: 10.99.0.1
assets:
  - name: plc-1
    zone: cell
    address: 10.99.0.5
    services:
      - protocol: modbus
`

// identityService is the identity service as init runs it, on a real
// TPM (swtpm): extend measures the boot into PCR 15 first (init does it
// once per boot; a second extend is a runtime change of the measurement).
func identityService(t *testing.T, tpmSock, state, sock string, extend string) (stop func()) {
	t.Helper()
	if extend != "" {
		tpm, err := identity.SocketTPM(tpmSock).Open()
		if err != nil {
			t.Fatal(err)
		}
		if err := identity.ExtendBootMeasurement(tpm, sha256.Sum256([]byte(extend))); err != nil {
			t.Fatal(err)
		}
		tpm.Close()
	}
	id, err := identity.Open(identity.Config{StateDir: state, Site: "lab.test", TPM: identity.SocketTPM(tpmSock), Create: true, Log: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := identity.Listen(id, identity.ServerConfig{Socket: sock, GID: -1, Allow: map[uint32]string{uint32(os.Geteuid()): "proxy"}})
	if err != nil {
		id.Close()
		t.Fatal(err)
	}
	go srv.Serve()
	var once sync.Once
	stop = func() { once.Do(func() { srv.Close(); id.Close() }) }
	t.Cleanup(stop)
	return stop
}

// The proxy outlives a restart of the identity service (its client dials
// again), and stops, ending its sessions and asking init not to restart
// it, when the identity service comes back in quarantine: the boot
// measurement changed while the gate ran.
func TestProxyStopsWhenIdentityGoesIntoQuarantine(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	dir := t.TempDir()
	state := filepath.Join(dir, "identity")
	sockDir, err := os.MkdirTemp("", "proxyd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	idSock := filepath.Join(sockDir, "id.sock")
	stopID := identityService(t, sw.Socket, state, idSock, "image-A")

	sitePath := filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(sitePath, []byte(testSite), 0o600); err != nil {
		t.Fatal(err)
	}
	var lg syncbuf.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(t.Context(), log.New(&lg, "", 0), &options{listen: "127.0.0.1:0", idSock: idSock, state: filepath.Join(dir, "proxy"),
			auditDir: filepath.Join(dir, "audit"), loader: proxy.SiteFileLoader(sitePath), source: sitePath, adminSock: filepath.Join(sockDir, "admin.sock"),
			idle: time.Minute, maxSessions: 16, maxPerUser: 4, maxCert: time.Hour, maxLoginFailures: auth.DefaultMaxFailures})
	}()
	line := waitLog(t, &lg, "listening on ", 60*time.Second)
	addr := strings.Fields(strings.TrimPrefix(line[strings.Index(line, "listening on "):], "listening on "))[0]
	handshake := func() error {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := handshake(); err != nil {
		t.Fatalf("TLS handshake with the proxy: %v", err)
	}

	// init restarts a crashed identity service: the proxy notices the gap
	// and its device key signs through the new service.
	stopID()
	waitLog(t, &lg, "identity service not answering", 10*time.Second)
	if err := handshake(); err == nil {
		t.Fatal("TLS handshake completed while the identity service was down")
	}
	stopID = identityService(t, sw.Socket, state, idSock, "")
	waitLog(t, &lg, "identity service answering again", 10*time.Second)
	if err := handshake(); err != nil {
		t.Fatalf("TLS handshake after the identity service restarted: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("proxy stopped after an identity restart: %v\n%s", err, lg.String())
	default:
	}

	// The boot measurement changes while the gate runs and the identity
	// service restarts: it comes back in quarantine, and the proxy stops.
	stopID()
	identityService(t, sw.Socket, state, idSock, "tampered")
	select {
	case err := <-done:
		if !errors.Is(err, errQuarantine) {
			t.Fatalf("proxy ended with %v, want errQuarantine\n%s", err, lg.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("proxy still running 20 s after the identity service went into quarantine:\n%s", lg.String())
	}
	if l := waitLog(t, &lg, "GATE IN QUARANTINE: ", time.Second); !strings.Contains(l, "PCR 15") {
		t.Errorf("quarantine line does not name the PCR: %s", l)
	}
	if err := handshake(); err == nil {
		t.Fatal("the proxy still accepts connections after stopping")
	}
}
