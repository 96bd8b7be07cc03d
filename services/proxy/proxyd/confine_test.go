package proxyd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otgate/otgate/audit"
)

const confineChildEnv = "OTGATE_PROXYD_CONFINE_CHILD"

func TestMain(m *testing.M) {
	if args := os.Getenv(confineChildEnv); args != "" {
		confineChild(strings.Fields(args))
		return
	}
	os.Exit(m.Run())
}

// confineChild parses the proxy's flags, confines itself as Main does and
// reports what it could do: the proxy's own file work, then what it must
// not reach. Each outcome is "" (done) or the error.
func confineChild(args []string) {
	rep := map[string]string{}
	try := func(name string, err error) {
		rep[name] = ""
		if err != nil {
			rep[name] = err.Error()
		}
	}
	o, err := parse(args...)
	if err == nil && os.Getenv("UNCONFINED") == "" {
		_, err = confine(o)
	}
	try("confine", err)
	// The proxy's own work: the policy, the audit log (open, append,
	// close: files made, renamed and synced), the user store's files,
	// the admin socket.
	_, err = o.loader()
	try("load policy", err)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	w, err := audit.Open(o.auditDir, key)
	if err == nil {
		_, err = w.AppendBuffered(audit.Event{Type: "test", Reason: "confined"})
		if cerr := w.Close(); err == nil {
			err = cerr
		}
	}
	try("audit log", err)
	try("user store", os.WriteFile(filepath.Join(o.state, "users.test"), []byte("x"), 0o600))
	l, err := net.Listen("unix", o.adminSock)
	if err == nil {
		l.Close()
	}
	try("admin socket", err)
	// Not its files: another service's state, the directory above its
	// own, a world-writable one, /etc written to.
	other := os.Getenv("OTHER")
	_, err = os.ReadFile(filepath.Join(other, "key"))
	try("read other state", err)
	try("write beside its state", os.WriteFile(filepath.Join(filepath.Dir(o.state), "planted"), nil, 0o600))
	try("write /tmp", os.WriteFile(filepath.Join(os.TempDir(), fmt.Sprintf("otgate-proxyd-%d", os.Getpid())), nil, 0o600)) // TMPDIR: the test's
	try("write the policy", os.WriteFile(o.policyFile, []byte("x"), 0o600))
	json.NewEncoder(os.Stdout).Encode(rep)
	os.Exit(0)
}

// TestConfinement runs the proxy's confinement in a child (it cannot be
// undone) on a tree laid out like the appliance's and checks that the
// proxy's own file work goes through and the rest is refused.
func TestConfinement(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: shows that not even root gets past the ruleset")
	}
	root := t.TempDir()
	perm := filepath.Join(root, "perm")
	for _, d := range []string{"policy", "identity"} {
		if err := os.MkdirAll(filepath.Join(perm, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	site := filepath.Join(perm, "policy", "site.yaml")
	if err := os.WriteFile(site, []byte(testSite), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(perm, "identity", "key"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(root, "tmp")
	if err := os.Mkdir(tmp, 0o1777); err != nil {
		t.Fatal(err)
	}
	sockDir, err := os.MkdirTemp("", "proxyd") // unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	args := []string{"-site", site, "-state", filepath.Join(perm, "proxy"), "-audit", filepath.Join(perm, "audit"),
		"-admin", filepath.Join(sockDir, "proxy", "admin.sock")}
	child := func(env ...string) map[string]string {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), confineChildEnv+"="+strings.Join(args, " "), "OTHER="+filepath.Join(perm, "identity"))
		cmd.Env = append(cmd.Env, "TMPDIR="+tmp) // a world-writable directory
		cmd.Env = append(cmd.Env, env...)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("child: %v", err)
		}
		var rep map[string]string
		if err := json.Unmarshal(out, &rep); err != nil {
			t.Fatalf("child: %v in %q", err, out)
		}
		return rep
	}
	rep := child()
	for _, ok := range []string{"confine", "load policy", "audit log", "user store", "admin socket"} {
		if got, seen := rep[ok]; !seen || got != "" {
			t.Errorf("%s, confined: %q, want it done", ok, got)
		}
	}
	for _, no := range []string{"read other state", "write beside its state", "write /tmp", "write the policy"} {
		if got := rep[no]; !strings.Contains(got, "permission denied") {
			t.Errorf("%s, confined: %q, want permission denied", no, got)
		}
	}
	// Unconfined, root does all of it: each refusal above is the
	// ruleset's. (It runs last: it overwrites the policy.)
	for name, got := range child("UNCONFINED=1") {
		if got != "" {
			t.Errorf("%s, unconfined: %q, want it done (the probe shows nothing)", name, got)
		}
	}
}
