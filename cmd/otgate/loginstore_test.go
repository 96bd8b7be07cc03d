//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/services/proxy/auth/totp"
)

// runOtgateFsize is runOtgate with the child's file size limit at fsize
// bytes (prlimit): a write past it fails as on a full disk.
func runOtgateFsize(t *testing.T, fsize int64, home, stdin string, args ...string) otgateRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "prlimit", append([]string{"--fsize=" + strconv.FormatInt(fsize, 10), "--", os.Args[0]}, args...)...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := otgateRun{stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("prlimit otgate %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("$ prlimit --fsize=%d otgate %s  (exit %d)\n%s%s", fsize, strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// TestLoginCutShortLeavesNoHalfCredential: a login that stores its key
// and profile but not its certificate (a full disk: here a file size
// limit that the certificate chain, the largest file, exceeds) leaves the
// user not logged in, and says so; the next command says "not logged in",
// never that the stored key and certificate do not match.
func TestLoginCutShortLeavesNoHalfCredential(t *testing.T) {
	g := startHostGate(t)
	key := g.enrol("alice")
	home := t.TempDir()
	prof := filepath.Join(t.TempDir(), "profile")
	r := runOtgate(t, home, hostGatePassword+"\n", "login", "--profile", prof, "--user", "alice", "--code", code(t, key), "--password-stdin", "--pin", g.Fingerprint, g.Addr)
	if r.code != 0 {
		t.Fatalf("login: exit %d, stderr %q", r.code, r.stderr)
	}
	size := func(f string) int64 {
		st, err := os.Stat(filepath.Join(prof, f))
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	limit := max(size(client.KeyFile), size(client.ProfileFile)) + 64
	if size(client.CertFile) <= limit {
		t.Fatalf("the certificate chain (%d bytes) is not larger than the key and the profile (limit %d): the test cannot cut the login short", size(client.CertFile), limit)
	}
	next, err := totp.Code(key.Secret, time.Now().Add(30*time.Second), key.Params) // each code works once
	if err != nil {
		t.Fatal(err)
	}
	r = runOtgateFsize(t, limit, home, hostGatePassword+"\n", "login", "--profile", prof, "--user", "alice", "--code", next, "--password-stdin", g.Addr)
	if r.code != 1 || !strings.HasPrefix(r.stderr, "otgate login: store the credential in "+prof+": ") ||
		!strings.HasSuffix(r.stderr, "(not logged in: log in again once that is mended)\n") {
		t.Errorf("login that cannot store its certificate: exit %d, stderr %q", r.code, r.stderr)
	}
	r = runOtgate(t, home, "", "assets", "--profile", prof)
	if want := "otgate assets: not logged in: no credential in " + prof + " (run otgate login --profile " + prof + " <gate>)\n"; r.code != 1 || r.stderr != want {
		t.Errorf("assets after a login cut short: exit %d, stderr %q, want %q", r.code, r.stderr, want)
	}
}
