package proxyd

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/audit/syslog"
	"github.com/otgate/otgate/internal/syncbuf"
	"github.com/otgate/otgate/services/identity"
	"github.com/otgate/otgate/services/proxy"
	"github.com/otgate/otgate/services/proxy/auth"
)

// A proxy started with a syslog cursor of another log (a gate reset with
// its state kept, say) sets the cursor aside, logs it, records it in the
// audit log (event syslog-export-reset) and exports its log to a real
// rsyslog from the first record, that event included (the export stopped
// for good at the first start).
func TestProxySyslogExportSetsForeignCursorAside(t *testing.T) {
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		t.Skip("rsyslogd not installed (Debian package rsyslog)")
	}
	rdir := t.TempDir()
	conf := fmt.Sprintf(`global(workDirectory="%[1]s" maxMessageSize="64k")
module(load="imtcp")
template(name="otg" type="string" string="%%msgid%%|%%structured-data%%\n")
input(type="imtcp" port="0" listenPortFileName="%[1]s/port")
action(type="omfile" file="%[1]s/out.log" template="otg")
`, rdir)
	if err := os.WriteFile(filepath.Join(rdir, "rsyslog.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	rs := exec.Command(bin, "-n", "-f", filepath.Join(rdir, "rsyslog.conf"), "-i", filepath.Join(rdir, "rsyslog.pid"))
	rs.Stdout, rs.Stderr = os.Stderr, os.Stderr
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Process.Kill(); rs.Wait() })
	var port string
	waitUntil(t, "rsyslogd to listen", func() bool {
		b, _ := os.ReadFile(filepath.Join(rdir, "port"))
		port = strings.TrimSpace(string(b))
		return port != "" && port != "0"
	})

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
	state := filepath.Join(dir, "proxy")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	cursor := filepath.Join(state, "syslog.cursor")
	if err := syslog.SaveCursor(cursor, syslog.Cursor{LogID: "a-log-before-the-reset", Seq: 5000, Hash: make([]byte, 32)}); err != nil {
		t.Fatal(err)
	}
	sitePath := filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(sitePath, []byte(testSite), 0o600); err != nil {
		t.Fatal(err)
	}
	auditDir := filepath.Join(dir, "audit")
	var lg syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, log.New(&lg, "", 0), &options{listen: "127.0.0.1:0", idSock: idSock, state: state,
			auditDir: auditDir, loader: proxy.SiteFileLoader(sitePath), source: sitePath, adminSock: filepath.Join(filepath.Dir(idSock), "admin.sock"),
			idle: time.Minute, maxSessions: 16, maxPerUser: 4, maxCert: time.Hour, maxLoginFailures: auth.DefaultMaxFailures,
			syslogAddr: "127.0.0.1:" + port})
	}()
	line := waitLog(t, &lg, `syslog export: export cursor `+cursor+` is for log "a-log-before-the-reset"`, 60*time.Second)
	t.Log(line)
	// The event is in the audit log and reaches rsyslog (records are
	// exported once 2 s old).
	waitUntil(t, "the reset event at rsyslog", func() bool {
		b, _ := os.ReadFile(filepath.Join(rdir, "out.log"))
		return strings.Contains(string(b), `event="`+syslog.EventExportReset+`"`)
	})
	// The exporter saves its cursor after a batch is sent, so rsyslog
	// may have the event before the cursor is saved (a stop then
	// leaves the batch to be sent again): wait for the new cursor.
	waitUntil(t, "the cursor of the new log saved", func() bool {
		c, ok, err := syslog.LoadCursor(cursor)
		return err == nil && ok && c.LogID != "a-log-before-the-reset"
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("proxy ended with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("proxy still running 20 s after it was told to stop")
	}
	b, _ := os.ReadFile(filepath.Join(rdir, "out.log"))
	if !strings.HasPrefix(string(b), "rotation|") {
		t.Fatalf("rsyslog's first line is not the log's first record (rotation):\n%s", b)
	}
	if stale, _ := filepath.Glob(cursor + ".stale-*"); len(stale) != 1 {
		t.Fatalf("stale cursors %q, want one", stale)
	}
	c, ok, err := syslog.LoadCursor(cursor)
	if err != nil || !ok || c.LogID == "a-log-before-the-reset" {
		t.Fatalf("cursor after the export: %+v %v %v", c, ok, err)
	}
	r, err := audit.NewReader(auditDir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for {
		e, err := r.Next()
		if err != nil {
			t.Fatalf("no %s event in the audit log (%v)", syslog.EventExportReset, err)
		}
		if ev, ok := e.Body.(audit.Event); ok && ev.Type == syslog.EventExportReset {
			if !strings.Contains(ev.Reason, "starts again from the oldest record") {
				t.Fatalf("event reason %q", ev.Reason)
			}
			return
		}
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
