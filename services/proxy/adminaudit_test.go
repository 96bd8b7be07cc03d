package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/services/proxy/adminapi"
	"github.com/otgate/otgate/services/proxy/auth"
	"github.com/otgate/otgate/services/proxy/auth/totp"
	"github.com/otgate/otgate/services/proxy/wire"
)

// adminGate is a gate with user administration and its admin socket, in
// a directory other uids may enter (the socket itself is root's, 0600).
func adminGate(t *testing.T, opts ...func(*Config)) (*gate, string) {
	t.Helper()
	g, sock, _ := adminGateServer(t, opts...)
	return g, sock
}

// adminGateServer is adminGate with its admin server.
func adminGateServer(t *testing.T, opts ...func(*Config)) (*gate, string, *AdminServer) {
	t.Helper()
	l := newLab(t)
	g := newGate(t, l, append([]func(*Config){func(c *Config) { c.UserAdmin = c.Users.(*auth.Store) }}, opts...)...)
	dir, err := os.MkdirTemp("", "otgate-admin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "admin.sock")
	a, err := g.srv.ListenAdmin(sock)
	if err != nil {
		t.Fatal(err)
	}
	go a.Serve()
	t.Cleanup(func() { a.Close() })
	return g, sock, a
}

// encodeFrame is v as one wire frame.
func encodeFrame(v any) ([]byte, error) {
	var b bytes.Buffer
	err := wire.WriteFrame(&b, v)
	return b.Bytes(), err
}

// adminEvents are the audit log's "admin" events.
func (g *gate) adminEvents(typ string) []audit.Event {
	var out []audit.Event
	for _, e := range g.entries() {
		if ev, ok := e.Body.(audit.Event); ok && ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// Every admin call that changes something, done or refused, is in the
// audit log with who made it (the peer's uid and pid from SO_PEERCRED),
// what and on whom; the password and the TOTP secret are not. Read-only
// calls (list) are not recorded.
func TestAdminCallsAuditedWithCaller(t *testing.T) {
	g, sock := adminGate(t)
	secret, err := totp.GenerateSecret(0)
	if err != nil {
		t.Fatal(err)
	}
	const password = "correct horse battery"
	calls := []struct {
		req  adminapi.Request
		want string // in the event's reason
	}{
		{adminapi.Request{Op: adminapi.OpUserAdd, User: "erin", Password: []byte(password), TOTPSecret: secret}, "user-add"},
		{adminapi.Request{Op: adminapi.OpUserList}, ""},
		{adminapi.Request{Op: adminapi.OpUserDisable, User: "erin"}, "user-disable"},
		{adminapi.Request{Op: adminapi.OpUserEnable, User: "erin"}, "user-enable"},
		{adminapi.Request{Op: adminapi.OpRevokeUser, User: "erin", Reason: "laptop stolen"}, "revoke-user"},
		{adminapi.Request{Op: adminapi.OpUserResetTOTP, User: "erin"}, "user-reset-totp"},
		{adminapi.Request{Op: adminapi.OpUserDisable, User: "nobody"}, "user-disable"},
		{adminapi.Request{Op: adminapi.OpUserRemove, User: "erin"}, "user-remove"},
	}
	var reset []byte
	for _, c := range calls {
		rsp, err := adminapi.Call(sock, c.req)
		if c.req.User == "nobody" {
			if err == nil {
				t.Fatal("disable of an unknown user accepted")
			}
		} else if err != nil {
			t.Fatalf("%s: %v", c.req, err)
		}
		if c.req.Op == adminapi.OpUserResetTOTP {
			reset = rsp.Enrolment.Secret
		}
	}
	evs := g.adminEvents("admin")
	me := fmt.Sprintf("by uid 0 pid %d", os.Getpid())
	i := 0
	for _, c := range calls {
		if c.want == "" {
			continue
		}
		if i >= len(evs) {
			t.Fatalf("no admin event for %s; the log has %+v", c.req, evs)
		}
		ev := evs[i]
		i++
		if ev.User != c.req.User || !strings.HasPrefix(ev.Reason, c.want+" ") || !strings.Contains(ev.Reason, me) {
			t.Errorf("admin event %+v for %s: want user %q, reason starting %q and naming %q", ev, c.req, c.req.User, c.want, me)
		}
		if c.req.User == "nobody" && !strings.Contains(ev.Reason, "refused") {
			t.Errorf("admin event %+v: want the refusal recorded", ev)
		}
	}
	if i != len(evs) {
		t.Errorf("%d admin events, want %d: %+v", len(evs), i, evs)
	}
	if !strings.Contains(evs[3].Reason, `reason "laptop stolen"`) {
		t.Errorf("revoke event %+v: want the reason given", evs[3])
	}
	// No secret in any record.
	for _, e := range g.entries() {
		b := fmt.Sprintf("%+v", e.Body)
		for _, s := range []string{password, totp.EncodeSecret(secret), totp.EncodeSecret(reset)} {
			if strings.Contains(b, s) {
				t.Errorf("audit record %s holds a secret", b)
			}
		}
	}
}

// A caller that is not root reaches the socket only if its permissions
// let it (here made 0666 for the test): the server refuses it by its
// SO_PEERCRED uid, changes nothing, and records the refusal with the
// uid and pid in the audit log and the proxy's log.
func TestAdminRefusesNonRootAudited(t *testing.T) {
	py, err := exec.LookPath("/usr/bin/python3")
	if err != nil {
		t.Skip("/usr/bin/python3 not installed")
	}
	g, sock := adminGate(t)
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	// nobody sends a user-add request and reads the answer.
	req, err := encodeFrame(adminapi.Request{Op: adminapi.OpUserAdd, User: "mallory", Password: []byte("correct horse battery")})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "-c", `
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
try:
    s.sendall(bytes.fromhex(sys.argv[2]))
except OSError:
    pass
sys.stdout.buffer.write(s.recv(65536))
`, sock, fmt.Sprintf("%x", req))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client as nobody: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "uid 65534 is not root") {
		t.Fatalf("answer to nobody: %q, want a refusal naming uid 65534", out)
	}
	if us := g.users.Users(); len(us) != 0 {
		t.Fatalf("users after nobody's add: %+v", us)
	}
	evs := g.adminEvents("admin-refused")
	if len(evs) != 1 || !strings.Contains(evs[0].Reason, "uid 65534 pid ") || !strings.Contains(evs[0].Reason, "not root") {
		t.Fatalf("admin-refused events %+v: want one naming uid 65534 and its pid", evs)
	}
	g.out.mu.Lock()
	log := g.out.b.String()
	g.out.mu.Unlock()
	if !strings.Contains(log, "admin socket: refused uid 65534") {
		t.Errorf("proxy log does not name the refused caller:\n%s", log)
	}
}

// siteWithRoles writes the harness's site with these roles defined and
// reloads it.
func (g *gate) siteWithRoles(roles ...string) {
	g.t.Helper()
	y := siteYAML + "roles:\n"
	for _, r := range roles {
		y += "  - name: " + r + "\n"
	}
	if err := os.WriteFile(g.sitePath, []byte(y), 0o600); err != nil {
		g.t.Fatal(err)
	}
	if _, err := g.srv.Reload(); err != nil {
		g.t.Fatal(err)
	}
}

// A role the policy in force does not define is refused at user-add,
// naming the role, the roles there are and the policy's file, and
// nothing is added (a typo would otherwise enrol a user whose role
// matches no grant, and the user list would show a role nobody has).
func TestAdminUserAddUnknownRole(t *testing.T) {
	g, sock := adminGate(t)
	add := func(roles ...string) error {
		_, err := adminapi.Call(sock, adminapi.Request{Op: adminapi.OpUserAdd, User: "dave", Roles: roles, Password: []byte("correct horse battery")})
		return err
	}
	// The harness's site defines no roles.
	if err := add("engineer"); err == nil || !strings.Contains(err.Error(), `role "engineer"`) || !strings.Contains(err.Error(), g.sitePath) {
		t.Fatalf("add with a role of a site without roles: %v, want an error naming the role and %s", err, g.sitePath)
	}
	g.siteWithRoles("engineer", "vendor")
	err := add("engineer", "enginer")
	if err == nil || !strings.Contains(err.Error(), `role "enginer"`) || !strings.Contains(err.Error(), "engineer, vendor") || !strings.Contains(err.Error(), g.sitePath) {
		t.Fatalf("add with an unknown role: %v, want an error naming it, the known roles and %s", err, g.sitePath)
	}
	if us := g.users.Users(); len(us) != 0 {
		t.Fatalf("users after refused adds: %+v", us)
	}
	if err := add("vendor", "engineer"); err != nil {
		t.Fatalf("add with known roles: %v", err)
	}
	// No roles: the site's user list may give them.
	if _, err := adminapi.Call(sock, adminapi.Request{Op: adminapi.OpUserAdd, User: "erin", Password: []byte("correct horse battery")}); err != nil {
		t.Fatalf("add without roles: %v", err)
	}
}

// Removing a user through the admin socket ends its live session at
// once, and its certificate stays refused after a user of the same name
// is added again (generations come from one counter).
func TestAdminRemoveEndsSessionsAndCertificates(t *testing.T) {
	g, sock := adminGate(t)
	go serveEcho(g.lab.listenPlant(t, 7))
	g.setGrants(grant{rule: "gus-echo", user: "gus", asset: "echo-1", protocol: "tcp"})
	gus := g.mustLogin("gus")
	c, r, err := tunnel(t, gus, "echo-1", "tcp")
	if err != nil {
		t.Fatal(err)
	}
	echoRoundTrip(t, c, "before remove")
	rsp, err := adminapi.Call(sock, adminapi.Request{Op: adminapi.OpUserRemove, User: "gus"})
	if err != nil || rsp.Ended != 1 {
		t.Fatalf("remove: %+v, %v; want one live session ended", rsp, err)
	}
	waitClosed(t, c, 30*time.Second)
	g.waitEnd(r.Session, EndRevoked)
	if _, err := adminapi.Call(sock, adminapi.Request{Op: adminapi.OpUserAdd, User: "gus", Password: []byte("correct horse battery")}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tunnel(t, gus, "echo-1", "tcp"); err == nil {
		t.Fatal("the removed user's certificate opened a tunnel after the name was added again")
	}
}

// A change is recorded before it is made: its "admin-request" record
// (who, what, on whom) precedes what the change writes and its "admin"
// outcome. When the audit log cannot record the request the call is
// refused and nothing changes; when the log fails after the request was
// recorded and the change made, the answer says the change WAS MADE and
// its outcome is unrecorded (an UnrecordedError beside the response), and
// the results (here the new enrolment) still reach the caller.
func TestAdminCallRecordedBeforeItActs(t *testing.T) {
	g, sock, a := adminGateServer(t)
	users := func() string {
		t.Helper()
		rsp, err := adminapi.Call(sock, adminapi.Request{Op: adminapi.OpUserList})
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%+v", rsp.Users)
	}
	if _, err := adminapi.Call(sock, adminapi.Request{Op: adminapi.OpUserAdd, User: "erin", Password: []byte("correct horse battery")}); err != nil {
		t.Fatal(err)
	}
	// The order in the log: the request, the store's own event, the outcome.
	var kinds []string
	for _, e := range g.entries() {
		if ev, ok := e.Body.(audit.Event); ok && ev.User == "erin" {
			kinds = append(kinds, ev.Type)
		}
	}
	if want := []string{adminapi.EventAdminRequest, string(auth.EventUserAdded), adminapi.EventAdmin}; fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Fatalf("erin's records %v, want %v", kinds, want)
	}
	req := g.adminEvents(adminapi.EventAdminRequest)[0]
	if me := fmt.Sprintf("user-add by uid 0 pid %d", os.Getpid()); !strings.HasPrefix(req.Reason, me) {
		t.Errorf("request record %+v, want a reason starting %q", req, me)
	}

	// The log fails between the request's record and the outcome's: the
	// change stands and the answer says its outcome is unrecorded.
	a.acting = func(r adminapi.Request) {
		if r.Op == adminapi.OpUserResetTOTP {
			g.log.Close()
		}
	}
	rsp, err := adminapi.Call(sock, adminapi.Request{Op: adminapi.OpUserResetTOTP, User: "erin"})
	var ue *adminapi.UnrecordedError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "WAS MADE") || !strings.Contains(err.Error(), "the request was recorded") {
		t.Fatalf("reset-totp with the log failing after its request: %v, want an UnrecordedError saying it was made", err)
	}
	if rsp == nil || rsp.Enrolment == nil || len(rsp.Enrolment.Secret) == 0 {
		t.Fatalf("reset-totp's enrolment did not reach the caller: %+v", rsp)
	}
	evs := g.adminEvents(adminapi.EventAdminRequest)
	if len(evs) != 2 || !strings.HasPrefix(evs[1].Reason, adminapi.OpUserResetTOTP+" by ") {
		t.Fatalf("request records %+v, want the reset-totp's", evs)
	}

	// The log gone: a change is refused before it acts.
	before := users()
	for _, r := range []adminapi.Request{
		{Op: adminapi.OpUserDisable, User: "erin"},
		{Op: adminapi.OpUserAdd, User: "frank", Password: []byte("correct horse battery")},
		{Op: adminapi.OpRevokeUser, User: "erin", Reason: "test"},
	} {
		_, err := adminapi.Call(sock, r)
		if err == nil || !strings.Contains(err.Error(), "the audit log cannot record the call") || !strings.Contains(err.Error(), "nothing was changed") {
			t.Errorf("%s with the log gone: %v, want refused, nothing changed", r, err)
		}
	}
	if after := users(); after != before {
		t.Errorf("users changed by refused calls:\nbefore %s\nafter  %s", before, after)
	}
}
