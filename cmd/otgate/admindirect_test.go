//go:build !windows

package main

import (
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/services/identity"
	"github.com/otgate/otgate/services/identity/api"
	"github.com/otgate/otgate/services/proxy/adminapi"
	"github.com/otgate/otgate/services/proxy/auth"
	"github.com/otgate/otgate/services/proxy/auth/authtest"
	"github.com/otgate/otgate/services/proxy/auth/totp"
)

// auditEntries reads every record of the log in dir.
func auditEntries(t *testing.T, dir string) []audit.Entry {
	t.Helper()
	r, err := audit.NewReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []audit.Entry
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read audit log %s: %v", dir, err)
		}
		out = append(out, e)
	}
}

// auditEventsOf are the log's events of type typ.
func auditEventsOf(t *testing.T, dir, typ string) []audit.Event {
	t.Helper()
	var out []audit.Event
	for _, e := range auditEntries(t, dir) {
		if ev, ok := e.Body.(audit.Event); ok && ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// verifyDirectLog verifies the log in dir as an auditor would on a
// stopped gate: signed by the device key, sealed, and not behind the
// TPM anchor counter.
func verifyDirectLog(t *testing.T, id *authtest.Identity, dir string) *audit.Report {
	t.Helper()
	cert, err := id.Client.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	counter, defined, err := id.Client.AuditAnchor()
	if err != nil || !defined {
		t.Fatalf("anchor counter: %d, defined %v, %v: want it advanced by the --direct runs", counter, defined, err)
	}
	rep, err := audit.Verify(dir, audit.Trust{PublicKey: cert.Leaf.PublicKey, RequireSealed: true, Anchor: &counter})
	if err != nil {
		t.Fatalf("verify the audit log after --direct changes: %v", err)
	}
	if rep.Unsigned != 0 {
		t.Errorf("%d unsigned records after --direct changes", rep.Unsigned)
	}
	return rep
}

// A change made with --direct (the proxy stopped) is an "admin" record
// in the proxy's signed, hash-chained audit log, of the same shape as
// the admin socket's, naming this process (uid, pid, command) and
// --direct, done or refused; list is not recorded. The log verifies
// (signatures, seal, TPM anchor) and holds no secret.
func TestAdminDirectRecorded(t *testing.T) {
	id := authtest.StartIdentity(t)
	dir := t.TempDir()
	logDir := filepath.Join(dir, "audit")
	common := []string{"--direct", "-identity", id.Socket, "-state", filepath.Join(dir, "proxy"), "-audit", logDir}
	const password = "correct horse battery"
	secret, err := totp.GenerateSecret(0)
	if err != nil {
		t.Fatal(err)
	}
	sf := filepath.Join(dir, "alice.totp")
	if err := os.WriteFile(sf, []byte(totp.EncodeSecret(secret)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	calls := []struct {
		args    []string
		want    string // the record's reason starts with it; "": not recorded
		refused bool
	}{
		{[]string{"add", "alice", "--roles", "engineer", "--password-stdin", "--totp-secret-file", sf}, "user-add (roles engineer; imported TOTP secret) by ", false},
		{[]string{"list"}, "", false},
		{[]string{"disable", "alice"}, "user-disable by ", false},
		{[]string{"unlock", "alice"}, "unlock by ", true}, // not locked
		{[]string{"enable", "alice"}, "user-enable by ", false},
		{[]string{"revoke", "alice"}, `revoke-user (reason "admin revoke (otgate admin user revoke)") by `, false},
		{[]string{"reset-totp", "alice"}, "user-reset-totp by ", false},
		{[]string{"disable", "nobody"}, "user-disable by ", true},
		{[]string{"remove", "alice"}, "user-remove by ", false},
	}
	var reset string
	for _, c := range calls {
		out, err := admin(t, password+"\n", append(c.args, common...)...)
		if (err != nil) != c.refused {
			t.Fatalf("admin user %v: %v, want refused %v", c.args, err, c.refused)
		}
		if c.args[0] == "reset-totp" {
			m := regexp.MustCompile(`(?m)^otpauth://\S+$`).FindString(out)
			k, err := totp.ParseURI(m)
			if err != nil {
				t.Fatalf("reset-totp printed no URI: %v", err)
			}
			reset = totp.EncodeSecret(k.Secret)
		}
	}
	me := fmt.Sprintf("by uid %d pid %d (", os.Getuid(), os.Getpid())
	evs := auditEventsOf(t, logDir, "admin")
	i := 0
	for _, c := range calls {
		if c.want == "" {
			continue
		}
		if i >= len(evs) {
			t.Fatalf("no admin record for %v; the log has %+v", c.args, evs)
		}
		ev := evs[i]
		i++
		user := c.args[1]
		if ev.User != user || !strings.HasPrefix(ev.Reason, c.want) || !strings.Contains(ev.Reason, me) ||
			!strings.Contains(ev.Reason, ") with --direct: ") {
			t.Errorf("admin record %+v for %v: want user %q, reason starting %q, naming %q and --direct", ev, c.args, user, c.want, me)
		}
		if got := strings.Contains(ev.Reason, ": refused: "); got != c.refused {
			t.Errorf("admin record %+v for %v: refusal recorded %v, want %v", ev, c.args, got, c.refused)
		}
	}
	if i != len(evs) {
		t.Errorf("%d admin records, want %d: %+v", len(evs), i, evs)
	}
	// Each change's request is recorded before it acts: an
	// "admin-request" record naming the caller precedes its outcome.
	var pending []string
	n := 0
	for _, e := range auditEntries(t, logDir) {
		ev, ok := e.Body.(audit.Event)
		if !ok {
			continue
		}
		switch ev.Type {
		case adminapi.EventAdminRequest:
			if !strings.Contains(ev.Reason, me) || !strings.HasSuffix(ev.Reason, ") with --direct") {
				t.Errorf("request record %+v: want it naming %q and --direct", ev, me)
			}
			pending = append(pending, ev.User)
		case adminapi.EventAdmin:
			if len(pending) != 1 || pending[0] != ev.User {
				t.Errorf("admin outcome %+v after the requests %v: want its own request just before", ev, pending)
			}
			pending = nil
			n++
		}
	}
	if n != len(evs) || len(pending) != 0 {
		t.Errorf("%d outcomes with their request of %d, %v left without an outcome", n, len(evs), pending)
	}
	// The store's own events are in the log too, as the proxy writes them.
	if added := auditEventsOf(t, logDir, string(auth.EventUserAdded)); len(added) != 1 || added[0].User != "alice" {
		t.Errorf("user-added events %+v: want one for alice", added)
	}
	for _, e := range auditEntries(t, logDir) {
		b := fmt.Sprintf("%+v", e.Body)
		for _, s := range []string{password, totp.EncodeSecret(secret), reset} {
			if strings.Contains(b, s) {
				t.Errorf("audit record %s holds a secret", b)
			}
		}
	}
	rep := verifyDirectLog(t, id, logDir)
	if rep.DevRecords != 0 {
		t.Errorf("%d dev-mode records from a TPM-backed identity", rep.DevRecords)
	}
}

// When the audit log cannot be opened, a --direct change is refused
// with the reason and changes nothing: the proxy running (it holds the
// log), or a log directory that cannot be opened.
func TestAdminDirectRefusedWithoutLog(t *testing.T) {
	id := authtest.StartIdentity(t)
	dir := t.TempDir()
	state, logDir := filepath.Join(dir, "proxy"), filepath.Join(dir, "audit")
	common := []string{"--direct", "-identity", id.Socket, "-state", state}
	if _, err := admin(t, "correct horse battery\n", append([]string{"add", "alice", "--password-stdin", "-audit", logDir}, common...)...); err != nil {
		t.Fatal(err)
	}
	users := func() []auth.UserInfo {
		t.Helper()
		st, err := auth.Open(auth.Config{Dir: state, Sealer: id.Client})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		return st.Users()
	}
	before := fmt.Sprintf("%+v", users())

	// The proxy running: another writer holds the log.
	cert, err := id.Client.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	holder, err := audit.Open(logDir, cert.PrivateKey.(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"disable", "alice"}, {"remove", "alice"}, {"add", "bob", "--password-stdin"}} {
		_, err := admin(t, "correct horse battery\n", append(append(args, "-audit", logDir), common...)...)
		t.Logf("refused: %v", err)
		if !errors.Is(err, audit.ErrInUse) || !strings.Contains(err.Error(), "is the proxy running?") || !strings.Contains(err.Error(), "nothing was changed") {
			t.Errorf("%v while the log is held: %v, want ErrInUse naming the running proxy and that nothing changed", args, err)
		}
	}
	if err := holder.Close(); err != nil {
		t.Fatal(err)
	}
	if after := fmt.Sprintf("%+v", users()); after != before {
		t.Errorf("users changed by refused --direct calls:\nbefore %s\nafter  %s", before, after)
	}
	if evs := auditEventsOf(t, logDir, "admin"); len(evs) != 1 {
		t.Errorf("admin records %+v: want only alice's add", evs)
	}

	// A log that cannot be opened (here: a file where the directory
	// should be): refused before the store is opened or created.
	notDir := filepath.Join(dir, "not-a-dir")
	if err := os.WriteFile(notDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(dir, "fresh-store")
	_, err = admin(t, "correct horse battery\n", "add", "carol", "--password-stdin", "--direct", "-identity", id.Socket, "-state", fresh, "-audit", notDir)
	t.Logf("refused: %v", err)
	if err == nil || !strings.Contains(err.Error(), "cannot be opened") || !strings.Contains(err.Error(), notDir) {
		t.Errorf("add with an audit log that cannot be opened: %v, want a refusal naming %s", err, notDir)
	}
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Errorf("store %s touched by a refused --direct add: %v", fresh, err)
	}
	verifyDirectLog(t, id, logDir)
}

// With an identity service in dev mode (no TPM, a software key) the
// --direct record is marked dev mode like every record the proxy writes
// then (a log of one kind, not mixed), and verifies with that key.
func TestAdminDirectDevModeMarked(t *testing.T) {
	dir := t.TempDir()
	id, err := identity.Open(identity.Config{StateDir: filepath.Join(dir, "identity"), Site: "lab.test", DevMode: true, Create: true, Log: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { id.Close() })
	sockDir, err := os.MkdirTemp("", "idsock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "identity.sock")
	srv, err := identity.Listen(id, identity.ServerConfig{Socket: sock, GID: -1, Allow: map[uint32]string{uint32(os.Getuid()): "proxy"}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })

	logDir := filepath.Join(dir, "audit")
	if _, err := admin(t, "correct horse battery\n", "add", "alice", "--password-stdin", "--direct", "-identity", sock, "-state", filepath.Join(dir, "proxy"), "-audit", logDir); err != nil {
		t.Fatal(err)
	}
	if evs := auditEventsOf(t, logDir, "admin"); len(evs) != 1 || !strings.HasPrefix(evs[0].Reason, "user-add by ") {
		t.Fatalf("admin records %+v: want alice's add", evs)
	}
	rep, err := audit.Verify(logDir, audit.Trust{PublicKey: id.Signer().Public(), RequireSealed: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.DevRecords != rep.Records || rep.Records == 0 {
		t.Errorf("%d of %d records marked dev mode, want all", rep.DevRecords, rep.Records)
	}
}

// logFiles are the names of the audit log's files in dir.
func logFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range m {
		if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() && strings.Contains(filepath.Base(f), ".log") {
			out = append(out, filepath.Base(f))
		}
	}
	return out
}

// --direct opens the log without the proxy's storage plan (see
// openDirectLog), and that is harmless: on a log the proxy sized for a
// small disk (1 MiB files, a 1 MiB budget) and holds over its budget
// (nothing exported to the syslog receiver yet), a --direct change
// removes no file, and the proxy, opening it again with its own sizing,
// appends, rotates at its size and verifies.
func TestAdminDirectLeavesTheProxysSizing(t *testing.T) {
	id := authtest.StartIdentity(t)
	dir := t.TempDir()
	logDir := filepath.Join(dir, "audit")
	cert, err := id.Client.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	const fileSize = 1 << 20
	proxyOpen := func() *audit.Writer {
		t.Helper()
		w, err := audit.Open(logDir, cert.PrivateKey.(crypto.Signer), audit.WithAnchor(api.AuditAnchor{Client: id.Client}),
			audit.WithMaxFileSize(fileSize),
			audit.WithRetention(audit.Retention{MaxBytes: fileSize, Removable: func(string) (uint64, bool) { return 0, false }}),
			audit.WithErrorHandler(func(err error) { t.Logf("proxy's audit log: %v", err) }))
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	w := proxyOpen()
	filler := audit.Event{Type: "test-filler", Reason: strings.Repeat("x", 16<<10)}
	for i := 0; i < 160; i++ { // 2.5 MiB: three files
		if _, err := w.AppendBuffered(filler); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	before := logFiles(t, logDir)
	if len(before) < 3 {
		t.Fatalf("the proxy's log has files %q, want at least 3", before)
	}

	if _, err := admin(t, "correct horse battery\n", "add", "alice", "--password-stdin", "--direct", "-identity", id.Socket, "-state", filepath.Join(dir, "proxy"), "-audit", logDir); err != nil {
		t.Fatal(err)
	}
	after := logFiles(t, logDir)
	for _, f := range before {
		if !slices.Contains(after, f) {
			t.Errorf("--direct removed %s (files before %q, after %q)", f, before, after)
		}
	}
	if len(auditEventsOf(t, logDir, "admin")) != 1 {
		t.Error("no admin record of --direct")
	}

	// The proxy again, with its sizing: it goes on, rotating at 1 MiB.
	w = proxyOpen()
	for i := 0; i < 80; i++ {
		if _, err := w.AppendBuffered(filler); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(logFiles(t, logDir)); n <= len(after) {
		t.Errorf("the proxy's 1.25 MiB after --direct made no new file: %d files, %d before", n, len(after))
	}
	verifyDirectLog(t, id, logDir)
}
