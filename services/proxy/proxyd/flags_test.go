package proxyd

import (
	"context"
	"errors"
	"flag"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/internal/syncbuf"
	"github.com/otgate/otgate/services/identity/swtpmtest"
	"github.com/otgate/otgate/services/proxy/adminapi"
	"github.com/otgate/otgate/services/proxy/auth"
	"github.com/otgate/otgate/services/proxy/auth/totp"
)

func parse(args ...string) (*options, error) {
	fs := flag.NewFlagSet("otgate-proxy", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return parseFlags(fs, args)
}

// TestFlagsDefaultsAndBadValues: the lockout flags default to the user
// store's own defaults, and bad values are refused naming the flag.
func TestFlagsDefaultsAndBadValues(t *testing.T) {
	o, err := parse("-site", "site.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if o.maxLoginFailures != auth.DefaultMaxFailures || o.autoUnlock != 0 {
		t.Errorf("defaults: -max-login-failures %d -auto-unlock %v, want %d and 0 (admin unlocks)", o.maxLoginFailures, o.autoUnlock, auth.DefaultMaxFailures)
	}
	if o, err = parse("-site", "site.yaml", "-max-login-failures", "3", "-auto-unlock", "15m"); err != nil || o.maxLoginFailures != 3 || o.autoUnlock != 15*time.Minute {
		t.Errorf("parse: %+v, %v", o, err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-site", "s.yaml", "-max-login-failures", "0"}, "-max-login-failures 0: want at least 1"},
		{[]string{"-site", "s.yaml", "-max-login-failures", "-2"}, "-max-login-failures -2: want at least 1"},
		{[]string{"-site", "s.yaml", "-max-login-failures", "many"}, `invalid value "many" for flag -max-login-failures`},
		{[]string{"-site", "s.yaml", "-auto-unlock", "-1m"}, "-auto-unlock -1m0s: want a duration of zero"},
		{[]string{"-site", "s.yaml", "-auto-unlock", "10"}, `invalid value "10" for flag -auto-unlock`},
		{[]string{"-max-login-failures", "3"}, "want exactly one of -site"},
		{[]string{"-site", "s.yaml", "extra"}, `unexpected argument "extra"`},
	} {
		if _, err := parse(c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("otgate-proxy %s: %v, want an error containing %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}

// TestMaxLoginFailuresFlag starts the proxy as its command line does,
// with -max-login-failures 2 -auto-unlock 1h, on a real identity service
// (swtpm): two wrong codes lock the account (the default would need
// five), the right code is then refused as locked, and the lock lifts at
// the time the flag says.
func TestMaxLoginFailuresFlag(t *testing.T) {
	oathtool, err := exec.LookPath("oathtool")
	if err != nil {
		t.Skip("oathtool not installed (apt-get install oathtool)")
	}
	sw := swtpmtest.Start(t, "")
	dir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "proxyd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	idSock := filepath.Join(sockDir, "id.sock")
	identityService(t, sw.Socket, filepath.Join(dir, "identity"), idSock, "")
	sitePath := filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(sitePath, []byte(testSite), 0o600); err != nil {
		t.Fatal(err)
	}
	adminSock := filepath.Join(sockDir, "admin.sock")
	o, err := parse("-listen", "127.0.0.1:0", "-identity", idSock, "-state", filepath.Join(dir, "proxy"), "-audit", filepath.Join(dir, "audit"),
		"-site", sitePath, "-admin", adminSock, "-max-login-failures", "2", "-auto-unlock", "1h")
	if err != nil {
		t.Fatal(err)
	}
	var lg syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, log.New(&lg, "", 0), o) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("proxy ended with %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("proxy still running 20 s after it was told to stop")
		}
	})
	line := waitLog(t, &lg, "listening on ", 60*time.Second)
	addr := strings.Fields(strings.TrimPrefix(line[strings.Index(line, "listening on "):], "listening on "))[0]

	rsp, err := adminapi.Call(adminSock, adminapi.Request{Op: adminapi.OpUserAdd, User: "alice", Password: []byte("correct horse battery")})
	if err != nil {
		t.Fatal(err)
	}
	secret := totp.EncodeSecret(rsp.Enrolment.Secret)
	code := func() string {
		out, err := exec.Command(oathtool, "--totp", "-b", secret).Output()
		if err != nil {
			t.Fatalf("oathtool: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	login := func(c string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := client.Login(ctx, client.LoginOptions{Gate: addr, TrustFirstUse: true, User: "alice", Password: "correct horse battery", Code: c, Dir: filepath.Join(dir, "client")})
		return err
	}
	user := func() adminapi.User {
		rsp, err := adminapi.Call(adminSock, adminapi.Request{Op: adminapi.OpUserList})
		if err != nil || len(rsp.Users) != 1 {
			t.Fatalf("user list: %+v, %v", rsp, err)
		}
		return rsp.Users[0]
	}
	good := code()
	bad := []byte(good)
	bad[0] = '0' + (bad[0]-'0'+5)%10
	for i := 1; i <= 2; i++ {
		// The store's back-off (1 s after the first failure) refuses an
		// attempt too soon without counting it: wait it out.
		for {
			err := login(string(bad))
			var ge *client.GateError
			if !errors.As(err, &ge) {
				t.Fatalf("login with a wrong code: %v, want refused", err)
			}
			if !strings.Contains(ge.Msg, "try again in") {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if u := user(); u.Failures != i || u.Locked != (i == 2) {
			t.Fatalf("after %d wrong codes: %+v, want %d failures, locked only at 2", i, u, i)
		}
	}
	u := user()
	if until := time.Unix(0, u.LockedUntil); until.Before(time.Now().Add(59*time.Minute)) || until.After(time.Now().Add(time.Hour)) {
		t.Errorf("locked until %v, want an hour from now (-auto-unlock 1h)", until)
	}
	// The back-off holds while locked too (a locked account answers the
	// right password differently): wait it out, then the lock answers.
	for {
		err := login(good)
		if err != nil && strings.Contains(err.Error(), "try again in") {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "account locked") {
			t.Fatalf("login with the right code on a locked account: %v, want refused as locked", err)
		}
		break
	}
}
