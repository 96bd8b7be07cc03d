package syslog

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
)

// rsyslog is a real rsyslogd receiving on a free loopback port and writing
// what it parsed to out with a template that keeps the structured data.
type rsyslog struct {
	dir, out, port string
	cmd            *exec.Cmd
}

func startRsyslog(t *testing.T, withTLS bool) (*rsyslog, *x509.CertPool) {
	t.Helper()
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		t.Skip("rsyslogd not installed (Debian package rsyslog)")
	}
	dir := t.TempDir()
	r := &rsyslog{dir: dir, out: filepath.Join(dir, "out.log")}
	var tlsConf, module string
	var pool *x509.CertPool
	if withTLS {
		if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so"); err != nil {
			if m, _ := filepath.Glob("/usr/lib/*/rsyslog/lmnsd_gtls.so"); len(m) == 0 {
				t.Skip("rsyslog TLS driver missing (Debian package rsyslog-gnutls)")
			}
		}
		pool = writeCerts(t, dir)
		tlsConf = fmt.Sprintf(`global(DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="%[1]s/ca.pem" DefaultNetstreamDriverCertFile="%[1]s/cert.pem" DefaultNetstreamDriverKeyFile="%[1]s/key.pem")`, dir)
		module = `module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")`
	} else {
		module = `module(load="imtcp")`
	}
	conf := fmt.Sprintf(`global(workDirectory="%[1]s" maxMessageSize="64k")
%[2]s
%[3]s
template(name="otg" type="string" string="%%timereported:::date-rfc3339%%|%%hostname%%|%%app-name%%|%%msgid%%|%%structured-data%%|%%msg%%\n")
input(type="imtcp" port="0" listenPortFileName="%[1]s/port")
action(type="omfile" file="%[1]s/out.log" template="otg")
`, dir, tlsConf, module)
	mustWrite(t, filepath.Join(dir, "rsyslog.conf"), []byte(conf))
	r.cmd = exec.Command(bin, "-n", "-f", filepath.Join(dir, "rsyslog.conf"), "-i", filepath.Join(dir, "rsyslog.pid"))
	r.cmd.Stdout, r.cmd.Stderr = os.Stderr, os.Stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cmd.Process.Kill(); r.cmd.Wait() })
	waitFor(t, "rsyslogd to listen", func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "port"))
		r.port = strings.TrimSpace(string(b))
		return err == nil && r.port != "" && r.port != "0"
	})
	return r, pool
}

func (r *rsyslog) addr() string { return net.JoinHostPort("127.0.0.1", r.port) }

var lineRE = regexp.MustCompile(`^([^|]*)\|([^|]*)\|([^|]*)\|([^|]*)\|(\[otgate@32473 [^|]*\])\|(.*)$`)
var paramRE = regexp.MustCompile(`([a-z]+)="((?:[^"\\]|\\.)*)"`)

type received struct {
	time, host, app, msgid, msg string
	params                      map[string]string
}

func (r *rsyslog) lines(t *testing.T) []received {
	t.Helper()
	f, err := os.Open(r.out)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []received
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := lineRE.FindStringSubmatch(sc.Text())
		if m == nil {
			t.Fatalf("rsyslog wrote a line that does not parse: %q", sc.Text())
		}
		rc := received{time: m[1], host: m[2], app: m[3], msgid: m[4], msg: strings.TrimSpace(m[6]), params: map[string]string{}}
		for _, p := range paramRE.FindAllStringSubmatch(m[5], -1) {
			rc.params[p[1]] = strings.NewReplacer(`\"`, `"`, `\\`, `\`, `\]`, `]`).Replace(p[2])
		}
		out = append(out, rc)
	}
	return out
}

func writeLog(t *testing.T, dir string, sessions []string) *audit.Writer {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	w, err := audit.Open(dir, key, audit.WithLogID("siem-log"), audit.WithMaxFileSize(4096))
	if err != nil {
		t.Fatal(err)
	}
	appendSessions(t, w, sessions)
	return w
}

func appendSessions(t *testing.T, w *audit.Writer, sessions []string) {
	ctx := context.Background()
	for _, id := range sessions {
		if _, err := w.Append(ctx, audit.SessionStart{SessionID: id, User: "alice", Asset: "plc-7", Protocol: "modbus", Rule: `eng "day"]`, Source: "10.0.0.5:5000"}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			if _, err := w.AppendBuffered(audit.Payload{SessionID: id, Direction: audit.ToAsset, Bytes: 12, Raw: []byte{0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 10}}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.Append(ctx, audit.Event{Type: "refusal", User: "mallory", Reason: "no grant for plc-9"}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Append(ctx, audit.SessionEnd{SessionID: id, Reason: "client closed"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
}

// runExporter runs an exporter until stop is called.
func runExporter(t *testing.T, cfg Config) (stop func()) {
	x, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != context.Canceled {
				t.Errorf("exporter ended with %v", err)
			}
		})
	}
	return stop
}

// checkReceived compares every record of the log with what rsyslog got.
func checkReceived(t *testing.T, r *rsyslog, logDir string) {
	t.Helper()
	load := func() map[uint64]audit.Entry {
		want := map[uint64]audit.Entry{}
		rd, err := audit.NewReader(logDir)
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		for {
			e, err := rd.Next()
			if err != nil {
				return want
			}
			want[e.Record.Seq] = e
		}
	}
	// The writer keeps appending background checkpoints: reload as needed.
	want := load()
	var got []received
	waitFor(t, fmt.Sprintf("rsyslog to receive all %d records", len(want)), func() bool {
		got = r.lines(t)
		want = load()
		seen := map[string]bool{}
		for _, g := range got {
			seen[g.params["seq"]] = true
		}
		return len(seen) >= len(want)
	})
	seen := map[uint64]int{}
	for _, g := range got {
		seq, err := strconv.ParseUint(g.params["seq"], 10, 64)
		if err != nil {
			t.Fatalf("line without a seq: %+v", g)
		}
		e, ok := want[seq]
		if !ok {
			want = load()
			e, ok = want[seq]
		}
		if !ok {
			t.Fatalf("rsyslog got seq %d that is not in the log", seq)
		}
		seen[seq]++
		if g.params["hash"] != e.Hash.String() || g.params["log"] != "siem-log" || g.params["kind"] != e.Record.Kind.String() || g.msgid != e.Record.Kind.String() {
			t.Fatalf("seq %d: received %+v, record hash %s kind %s", seq, g, e.Hash, e.Record.Kind)
		}
		if g.app != "otgate" || g.host != "gate-1" {
			t.Fatalf("seq %d: app %q host %q", seq, g.app, g.host)
		}
		wantTime := e.Record.Time.Time()
		gotTime, err := time.Parse(time.RFC3339Nano, g.time)
		if err != nil || gotTime.Sub(wantTime).Abs() > time.Millisecond {
			t.Fatalf("seq %d: time %q, want %s (%v)", seq, g.time, wantTime, err)
		}
		if id := audit.SessionOf(e.Body); id != "" {
			if g.params["session"] != id {
				t.Fatalf("seq %d: session %q, want %q", seq, g.params["session"], id)
			}
			if _, isStart := e.Body.(audit.SessionStart); isStart && (g.params["user"] != "alice" || g.params["rule"] != `eng "day"]`) {
				t.Fatalf("seq %d: user/rule not carried: %+v", seq, g.params)
			}
		}
		if line := audit.FormatBody(e.Record.Time, e.Body, audit.ShowOptions{}); g.msg != line {
			t.Fatalf("seq %d: message %q, want %q", seq, g.msg, line)
		}
	}
	dups := 0
	for _, n := range seen {
		dups += n - 1
	}
	t.Logf("rsyslog received %d lines for %d records (%d duplicates)", len(got), len(want), dups)
}

func TestExportToRsyslogTCP(t *testing.T) {
	r, _ := startRsyslog(t, false)
	logDir := t.TempDir()
	w := writeLog(t, logDir, []string{"s1", "s2", "s3", "s4"})
	defer w.Close()
	cursor := filepath.Join(t.TempDir(), "cursor")
	cfg := Config{Dir: logDir, Cursor: cursor, Addr: r.addr(), Hostname: "gate-1", Poll: 20 * time.Millisecond, Batch: 5}
	stop := runExporter(t, cfg)
	checkReceived(t, r, logDir)
	stop()
	c, ok, err := LoadCursor(cursor)
	if err != nil || !ok || c.LogID != "siem-log" {
		t.Fatalf("cursor after export: %+v %v %v", c, ok, err)
	}
	// More records while the exporter is down; a new exporter resumes
	// from the cursor: nothing skipped.
	appendSessions(t, w, []string{"s5", "s6"})
	stop = runExporter(t, cfg)
	checkReceived(t, r, logDir)
	stop()
	// An exporter that died after sending but before saving its cursor
	// resends (at-least-once): the receiver gets duplicates, never gaps.
	rd, _ := audit.NewReader(logDir)
	var old audit.Entry
	for i := 0; i < 6; i++ {
		old, _ = rd.Next()
	}
	rd.Close()
	if err := SaveCursor(cursor, Cursor{LogID: "siem-log", Seq: old.Record.Seq, Hash: old.Hash[:]}); err != nil {
		t.Fatal(err)
	}
	before := len(r.lines(t))
	stop = runExporter(t, cfg)
	rep, err := audit.Verify(logDir, audit.Trust{ChainOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	resend := int(rep.LastSeq - old.Record.Seq)
	waitFor(t, "the resent records", func() bool { return len(r.lines(t)) >= before+resend })
	checkReceived(t, r, logDir)
	stop()
}

func TestExportToRsyslogTLSAcrossReceiverRestart(t *testing.T) {
	r, pool := startRsyslog(t, true)
	logDir := t.TempDir()
	w := writeLog(t, logDir, []string{"t1", "t2"})
	defer w.Close()
	cfg := Config{Dir: logDir, Cursor: filepath.Join(t.TempDir(), "cursor"), Addr: r.addr(), Hostname: "gate-1",
		TLS:  &tls.Config{RootCAs: pool, ServerName: "siem.test", MinVersion: tls.VersionTLS12},
		Poll: 20 * time.Millisecond, Batch: 4, RetryDelay: 50 * time.Millisecond, MinAge: 100 * time.Millisecond}
	stop := runExporter(t, cfg)
	defer func() { stop() }()
	checkReceived(t, r, logDir)
	// The receiver goes away and comes back on another port is out of
	// scope; here it restarts on the same config and the exporter must
	// reconnect and deliver what was appended meanwhile.
	r.cmd.Process.Kill()
	r.cmd.Wait()
	appendSessions(t, w, []string{"t3"})
	r.cmd = exec.Command(r.cmd.Path, r.cmd.Args[1:]...)
	r.cmd.Stdout, r.cmd.Stderr = os.Stderr, os.Stderr
	// rsyslog picks a new free port: point the exporter at it by
	// restarting the exporter with the new address.
	os.Remove(filepath.Join(r.dir, "port"))
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "rsyslogd to listen again", func() bool {
		b, err := os.ReadFile(filepath.Join(r.dir, "port"))
		r.port = strings.TrimSpace(string(b))
		return err == nil && r.port != "" && r.port != "0"
	})
	stop()
	cfg.Addr = r.addr()
	stop = runExporter(t, cfg)
	checkReceived(t, r, logDir)
}

func writeCerts(t *testing.T, dir string) *x509.CertPool {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test SIEM CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "siem.test"}, DNSNames: []string{"siem.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	mustWrite(t, filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	mustWrite(t, filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	mustWrite(t, filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool
}

func mustWrite(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
