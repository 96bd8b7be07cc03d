package proxy

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/services/proxy/adminapi"
	"github.com/otgate/otgate/services/proxy/auth"
	"github.com/otgate/otgate/services/proxy/auth/totp"
)

// User administration through the admin socket while the proxy holds the
// store: an imported TOTP secret works with an independent code generator,
// the list shows the user, disable ends the live session and refuses the
// next login, and bad requests change nothing.
func TestAdminSocketUsers(t *testing.T) {
	l := newLab(t)
	go serveEcho(l.listenPlant(t, 7))
	g := newGate(t, l, func(c *Config) { c.UserAdmin = c.Users.(*auth.Store) })
	g.setGrants(grant{rule: "erin-echo", user: "erin", asset: "echo-1", protocol: "tcp"})
	g.siteWithRoles("engineer")
	sock := filepath.Join(t.TempDir(), "admin.sock")
	a, err := g.srv.ListenAdmin(sock)
	if err != nil {
		t.Fatal(err)
	}
	go a.Serve()
	defer a.Close()
	call := func(req adminapi.Request) (*adminapi.Response, error) { return adminapi.Call(sock, req) }

	secret, err := totp.GenerateSecret(0)
	if err != nil {
		t.Fatal(err)
	}
	rsp, err := call(adminapi.Request{Op: adminapi.OpUserAdd, User: "erin", Roles: []string{"engineer"},
		Password: []byte("correct horse battery"), TOTPSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	if en := rsp.Enrolment; en == nil || string(en.Secret) != string(secret) || !strings.HasPrefix(en.URI, "otpauth://totp/") {
		t.Fatalf("enrolment %+v: want the imported secret and an otpauth URI", rsp.Enrolment)
	}
	for _, bad := range []adminapi.Request{
		{Op: adminapi.OpUserAdd, User: "erin", Password: []byte("correct horse battery")}, // exists
		{Op: adminapi.OpUserAdd, User: "frank", Password: []byte("correct horse battery"), TOTPSecret: []byte("short")},
		{Op: adminapi.OpUserAdd, User: "frank"},                                                // no password
		{Op: adminapi.OpUserAdd, User: "Bad Name!", Password: []byte("correct horse battery")}, // name
		{Op: adminapi.OpUserDisable, User: "nobody"},
		{Op: adminapi.OpUserRemove},
	} {
		if _, err := call(bad); err == nil {
			t.Errorf("admin %s accepted", bad)
		}
	}
	rsp, err = call(adminapi.Request{Op: adminapi.OpUserList})
	if err != nil {
		t.Fatal(err)
	}
	if len(rsp.Users) != 1 || rsp.Users[0].Name != "erin" || !rsp.Users[0].Pending || rsp.Users[0].Roles[0] != "engineer" {
		t.Fatalf("user list %+v: want only erin, pending, engineer", rsp.Users)
	}

	_, dir, err := g.login("erin", "correct horse battery", oathtool(t, totp.EncodeSecret(secret)))
	if err != nil {
		t.Fatalf("login with the imported secret: %v", err)
	}
	erin, err := client.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, r, err := tunnel(t, erin, "echo-1", "tcp")
	if err != nil {
		t.Fatal(err)
	}
	echoRoundTrip(t, c, "before disable")

	rsp, err = call(adminapi.Request{Op: adminapi.OpUserDisable, User: "erin"})
	if err != nil || rsp.Ended != 1 {
		t.Fatalf("disable: %+v, %v; want one live session ended", rsp, err)
	}
	waitClosed(t, c, 30*time.Second)
	g.waitEnd(r.Session, EndRevoked)
	if _, _, err := tunnel(t, erin, "echo-1", "tcp"); err == nil {
		t.Fatal("tunnel of a disabled user accepted")
	}
	rsp, _ = call(adminapi.Request{Op: adminapi.OpUserList})
	if !rsp.Users[0].Disabled {
		t.Fatalf("user list %+v: want erin disabled", rsp.Users)
	}
	if _, err := call(adminapi.Request{Op: adminapi.OpUserRemove, User: "erin"}); err != nil {
		t.Fatal(err)
	}
	if rsp, _ = call(adminapi.Request{Op: adminapi.OpUserList}); len(rsp.Users) != 0 {
		t.Fatalf("user list after remove: %+v", rsp.Users)
	}
}
