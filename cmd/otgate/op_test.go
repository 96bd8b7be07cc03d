//go:build linux

package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/initstatus"
	"github.com/otgate/otgate/services/proxy/adminapi"
	"github.com/otgate/otgate/site"
)

// shortDir is a directory for unix sockets (their paths are limited to
// 108 bytes, too short for t.TempDir under a long test name), removed
// when the test ends.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "op")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Every operator command's bad command lines exit 2 with what is wrong and
// a usage line, help exits 0, a failure exits 1: the same for all, so that
// scripts can tell a typo from a failed operation. Before, every usage
// error exited 1 (as a failure), -h exited 1 with "flag: help requested",
// `site -h` and `site show` said "want exactly one FILE", and `segment show
// extra` ignored "extra" and went on to the socket.
func TestOpExitStatus(t *testing.T) {
	home := t.TempDir()
	missing := filepath.Join(t.TempDir(), "none.yaml")
	cases := []struct {
		args   []string
		code   int
		stderr string // contained in stderr ("" : stderr empty)
		stdout string // contained in stdout
	}{
		{[]string{"help"}, 0, "", "usage: otgate <command>"},
		{[]string{"help", "site"}, 0, "usage: otgate site check FILE", ""},
		{[]string{"help", "nosuch"}, 2, `unknown command "nosuch"`, ""},
		{[]string{"nosuch"}, 2, `otgate: unknown command "nosuch"`, ""},
		{[]string{"site", "-h"}, 0, "usage: otgate site check FILE", ""},
		{[]string{"site", "apply", "-h"}, 0, "-no-reload", ""},
		{[]string{"site"}, 2, "otgate site: missing subcommand (check or apply)\nusage:", ""},
		{[]string{"site", "show"}, 2, `otgate site: unknown subcommand "show" (want check or apply)`, ""},
		{[]string{"site", "check"}, 2, "otgate site: check: want exactly one FILE", ""},
		{[]string{"site", "check", "-dir", "x", demoSite}, 2, "otgate site: flag provided but not defined: -dir\nusage:", ""},
		{[]string{"site", "check", missing}, 1, "no such file", ""},
		{[]string{"segment"}, 2, "otgate segment: missing subcommand", ""},
		{[]string{"segment", "-h"}, 0, "usage: otgate segment", ""},
		{[]string{"segment", "show", "extra"}, 2, `otgate segment: show: unexpected argument "extra"`, ""},
		{[]string{"segment", "nosuch"}, 2, `unknown subcommand "nosuch"`, ""},
		{[]string{"netconf", "asset"}, 2, "otgate netconf: asset: missing NAME", ""},
		{[]string{"netconf", "status", "-after", "3"}, 2, "-after is for events", ""},
		{[]string{"netconf", "-h"}, 0, "usage: otgate netconf", ""},
		{[]string{"time", "step", "-wait", "0"}, 2, "otgate time: -wait 0s: want a duration above 0", ""},
		{[]string{"time", "later"}, 2, `otgate time: unexpected argument "later"`, ""},
		{[]string{"time", "-h"}, 0, "usage: otgate time", ""},
		{[]string{"sessions", "nosuch"}, 2, `otgate sessions: unknown operation "nosuch"`, ""},
		{[]string{"sessions", "revoke-user"}, 2, "otgate sessions: revoke-user: missing USER", ""},
		{[]string{"sessions", "revoke-serial", "alice"}, 2, "revoke-serial: missing SERIAL", ""},
		{[]string{"sessions", "unlock", "alice", "bob"}, 2, `unlock: unexpected argument "bob"`, ""},
		{[]string{"sessions", "-h"}, 0, "usage: otgate sessions", ""},
		{[]string{"explain"}, 2, "otgate explain: missing ASSET", ""},
		{[]string{"explain", "-h"}, 0, "usage: otgate explain", ""},
		{[]string{"explain", "a", "b", "c"}, 2, `unexpected argument "c"`, ""},
		{[]string{"explain", "plc-tank", "--at", "tomorrow", "--site", demoSite}, 2, `--at "tomorrow"`, ""},
		{[]string{"explain", "plc-tank", "--site", demoSite, "--applied", missing}, 2, "--site and --applied: give one", ""},
		{[]string{"status", "extra"}, 2, `otgate status: unexpected argument "extra"`, ""},
		{[]string{"status", "-json", "-log"}, 2, "-json and -log: give one", ""},
		{[]string{"status", "-h"}, 0, "usage: otgate status", ""},
		// The client, identity, audit and admin commands follow the same
		// rule (they exited 1 on a bad command line).
		{[]string{"login"}, 2, "otgate login: usage: otgate login", ""},
		{[]string{"login", "--nosuch", "x"}, 2, "flag provided but not defined: -nosuch", ""},
		{[]string{"connect"}, 2, "otgate connect: usage: otgate connect <asset>", ""},
		{[]string{"assets", "extra"}, 2, "usage: otgate assets [--profile DIR]", ""},
		{[]string{"identity"}, 2, "otgate identity: identity: missing subcommand", ""},
		{[]string{"identity", "nosuch"}, 2, `identity: unknown subcommand "nosuch"`, ""},
		{[]string{"identity", "install-cert"}, 2, "identity install-cert: -in is required", ""},
		{[]string{"audit"}, 2, "usage:", ""},
		{[]string{"audit", "nosuch"}, 2, `unknown audit command "nosuch"`, ""},
		{[]string{"audit", "verify"}, 2, "want exactly one log directory", ""},
		{[]string{"admin"}, 2, "admin: want: admin user <subcommand>", ""},
		{[]string{"admin", "user", "nosuch"}, 2, `admin user: unknown subcommand "nosuch"`, ""},
		{[]string{"admin", "user", "disable"}, 2, "missing user name", ""},
	}
	for _, c := range cases {
		r := runOtgate(t, home, "", c.args...)
		if r.code != c.code || !strings.Contains(r.stdout, c.stdout) ||
			(c.stderr == "" && r.stderr != "") || !strings.Contains(r.stderr, c.stderr) {
			t.Errorf("otgate %s: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
				strings.Join(c.args, " "), r.code, r.stdout, r.stderr, c.code, c.stdout, c.stderr)
		}
		if strings.Contains(r.stderr, "flag: help requested") {
			t.Errorf("otgate %s: stderr %q", strings.Join(c.args, " "), r.stderr)
		}
	}
}

// `otgate status` exits 1 when the gate is not healthy, after the table
// (or the JSON), with what is wrong on stderr; 0 when it is. Before, it
// exited 0 whatever the services' states.
func TestOpStatusExitsOneWhenNotHealthy(t *testing.T) {
	healthy := func() *initstatus.Status {
		return &initstatus.Status{Hostname: "gate-1", Ready: true,
			Watchdog: initstatus.Watchdog{Device: "/dev/watchdog0", Timeout: 30 * time.Second, Petting: true},
			Services: []initstatus.Service{
				{Name: "segment", Critical: true, State: initstatus.StateReady, PID: 10},
				{Name: "proxy", Critical: true, State: initstatus.StateReady, PID: 11},
				{Name: "timesync", State: initstatus.StateReady, PID: 12},
			}}
	}
	home := t.TempDir()
	r := runOtgate(t, home, "", "status", "-socket", serveStatus(t, healthy()))
	if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, "proxy*") {
		t.Errorf("healthy gate: exit %d, stdout %q, stderr %q; want exit 0 and the table", r.code, r.stdout, r.stderr)
	}
	cases := []struct {
		name   string
		change func(st *initstatus.Status)
		want   string
	}{
		{"proxy failed", func(st *initstatus.Status) {
			st.Services[1].State, st.Services[1].Reason, st.Services[1].PID = initstatus.StateFailed, "crash loop: 5 exits in 60s", 0
		}, "proxy failed (crash loop: 5 exits in 60s)"},
		{"segment unhealthy", func(st *initstatus.Status) {
			st.Services[0].State, st.Services[0].Reason = initstatus.StateUnhealthy, "ruleset drift"
		}, "segment unhealthy (ruleset drift)"},
		{"timesync restarting", func(st *initstatus.Status) { st.Services[2].State = initstatus.StateBackoff }, "timesync backoff"},
		{"not ready", func(st *initstatus.Status) { st.Ready = false }, "not ready"},
		{"firewall", func(st *initstatus.Status) { st.FirewallError = "nft: no such table" }, "firewall error: nft: no such table"},
		{"watchdog", func(st *initstatus.Status) {
			st.Watchdog.Petting, st.Watchdog.Note = false, "critical service proxy failed"
		}, "watchdog /dev/watchdog0 NOT petted (critical service proxy failed)"},
	}
	for _, c := range cases {
		st := healthy()
		c.change(st)
		sock := serveStatus(t, st)
		for _, json := range []bool{false, true} {
			args := []string{"status", "-socket", sock}
			if json {
				args = append(args, "-json")
			}
			r := runOtgate(t, home, "", args...)
			if r.code != 1 || !strings.HasPrefix(r.stderr, "otgate status: the gate is NOT healthy: ") ||
				!strings.Contains(r.stderr, c.want) || !strings.Contains(r.stdout, "gate-1") {
				t.Errorf("%s (json %v): exit %d, stdout %q, stderr %q; want exit 1, the status, and %q on stderr",
					c.name, json, r.code, r.stdout, r.stderr, c.want)
			}
		}
	}
}

// A command whose service is down says so, naming the socket, and exits
// 1; never a bare Go dial error. Checked with no socket file and with a
// socket file nobody listens on (a service that died).
func TestOpServiceDownSaysSo(t *testing.T) {
	dir := shortDir(t)
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	home := t.TempDir()
	for _, sock := range []string{filepath.Join(dir, "none.sock"), stale} {
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"status", "-socket", sock}, "otgate status: init does not answer on " + sock + ": this is not a running gate"},
			{[]string{"time", "-socket", sock}, "otgate time: init does not answer on " + sock},
			{[]string{"sessions", "--socket", sock}, "otgate sessions: the proxy is not running: "},
			{[]string{"sessions", "--socket", sock, "revoke-user", "alice"}, "otgate sessions: the proxy is not running: "},
			{[]string{"segment", "-socket", sock, "show"}, "otgate segment: the segment service is not running: "},
			{[]string{"netconf", "-socket", sock, "status"}, "otgate netconf: the netconf service is not running: "},
		} {
			r := runOtgate(t, home, "", c.args...)
			if r.code != 1 || !strings.HasPrefix(r.stderr, c.want) || !strings.Contains(r.stderr, sock) ||
				strings.Contains(r.stderr, "dial unix") {
				t.Errorf("otgate %s: exit %d, stderr %q; want exit 1 and %q naming the socket, no dial error",
					strings.Join(c.args, " "), r.code, r.stderr, c.want)
			}
		}
	}
}

// `otgate sessions` records --reason for every operation that changes
// something (reload and unlock dropped it: the audit log's admin event had
// no reason), and says what it did, naming whom.
func TestOpSessionsRecordReasonAndSayWhat(t *testing.T) {
	g := startHostGate(t)
	sock := filepath.Join(shortDir(t), "admin.sock")
	a, err := g.Server.ListenAdmin(sock)
	if err != nil {
		t.Fatal(err)
	}
	go a.Serve()
	t.Cleanup(func() { a.Close() })
	g.enrol("alice")
	home := t.TempDir()

	r := runOtgate(t, home, "", "sessions", "--socket", sock, "reload", "--reason", "CR-42 new zone")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "policy reloaded from ") || !strings.HasSuffix(r.stdout, "; 0 live sessions ended as no longer allowed\n") {
		t.Errorf("reload: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if !g.hasEvent("", adminapi.EventAdmin, `reload (reason "CR-42 new zone") by `) {
		t.Errorf("the reload's admin event lacks its reason: %+v", g.events(""))
	}

	r = runOtgate(t, home, "", "sessions", "--socket", sock, "revoke-user", "alice", "--reason", "laptop lost")
	if r.code != 0 || r.stdout != "revoked every certificate of alice (they must log in again); 0 live sessions ended\n" {
		t.Errorf("revoke-user: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if !g.hasEvent("alice", adminapi.EventAdmin, `revoke-user (reason "laptop lost") by `) {
		t.Errorf("the revocation's admin event lacks its reason: %+v", g.events("alice"))
	}

	// alice is not locked: the proxy refuses, the command exits 1 and
	// the refusal is recorded with the reason too.
	r = runOtgate(t, home, "", "sessions", "--socket", sock, "unlock", "alice", "--reason", "ticket 7")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "otgate sessions: proxy admin unlock: ") {
		t.Errorf("unlock of a user not locked: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if !g.hasEvent("alice", adminapi.EventAdmin, `unlock (reason "ticket 7") by `) {
		t.Errorf("the unlock's admin event lacks its reason: %+v", g.events("alice"))
	}
}

// `otgate site apply` says what the new policy replaced: nothing, the
// same policy, or which one (name, source file, sha256, counts).
func TestOpSiteApplySaysWhatItReplaced(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "policy")
	noBoot := filepath.Join(t.TempDir(), "boot.cbor")
	apply := func(file string) string {
		t.Helper()
		var out bytes.Buffer
		if err := siteCommand([]string{"apply", "-no-reload", "-boot-config", noBoot, "-dir", dir, file}, &out); err != nil {
			t.Fatalf("apply %s: %v\n%s", file, err, out.String())
		}
		return out.String()
	}
	if out := apply(demoSite); !strings.Contains(out, "site: no policy was applied before\n") {
		t.Errorf("first apply:\n%s", out)
	}
	if out := apply(demoSite); !strings.Contains(out, "site: unchanged: the same policy was already applied\n") {
		t.Errorf("same again:\n%s", out)
	}
	a, err := site.LoadApplied(filepath.Join(dir, site.AppliedFile))
	if err != nil {
		t.Fatal(err)
	}
	other := otherSite(t, "other-plant")
	want := "site: replaces demo-plant from example-site.yaml (sha256 " + fmt.Sprintf("%x", a.SourceSHA256[:6]) + "): 1 zones, 2 assets, 0 exceptions\n"
	if out := apply(other); !strings.Contains(out, want) {
		t.Errorf("another policy: want %q in:\n%s", want, out)
	}
}

// runOtgateAs is runOtgate as uid:gid (not root), from a copy of the
// test binary that user may run.
func runOtgateAs(t *testing.T, uid, gid uint32, args ...string) otgateRun {
	t.Helper()
	dir := shortDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "otgate")
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "HOME="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	r := otgateRun{stdout: out.String(), stderr: errOut.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("otgate %s as uid %d: %v", strings.Join(args, " "), uid, err)
	}
	t.Logf("$ (uid %d) otgate %s  (exit %d)\n%s%s", uid, strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// Root-only operations run by another user are refused in words (root
// only, run it as root), not with EACCES noise, and change nothing.
func TestOpNonRootRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a command as another user")
	}
	const nobody = 65534
	sockDir := shortDir(t)
	if err := os.Chmod(sockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Root-only sockets (mode 0600, as the services make them).
	initSock := serveStatus(t, &initstatus.Status{Ready: true})
	os.Chmod(filepath.Dir(initSock), 0o755)
	os.Chmod(initSock, 0o600)
	g := startHostGate(t)
	adminSock := filepath.Join(sockDir, "admin.sock")
	a, err := g.Server.ListenAdmin(adminSock)
	if err != nil {
		t.Fatal(err)
	}
	go a.Serve()
	t.Cleanup(func() { a.Close() })
	// A policy directory only root may write, as /perm/policy.
	policyDir := filepath.Join(sockDir, "policy")
	if err := os.Mkdir(policyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	siteFile := filepath.Join(sockDir, "site.yaml")
	srcSite, _ := os.ReadFile(demoSite)
	if err := os.WriteFile(siteFile, srcSite, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "-socket", initSock}, "otgate status: init's status socket " + initSock + " is root only (you are uid 65534): run this as root on the gate"},
		{[]string{"time", "step", "-socket", initSock}, "otgate time: step is for root on the gate (you are uid 65534)"},
		{[]string{"sessions", "--socket", adminSock, "revoke-user", "alice"}, "otgate sessions: the proxy's socket " + adminSock + " is root only (you are uid 65534): run this as root on the gate"},
		{[]string{"site", "apply", "-no-reload", "-boot-config", filepath.Join(sockDir, "none.cbor"), "-dir", policyDir, siteFile},
			"apply must run as root on the gate (you are uid 65534); nothing applied"},
	} {
		r := runOtgateAs(t, nobody, nobody, c.args...)
		if r.code != 1 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("otgate %s as uid %d: exit %d, stderr %q; want exit 1 and %q", strings.Join(c.args, " "), nobody, r.code, r.stderr, c.want)
		}
	}
	if ents, _ := os.ReadDir(policyDir); len(ents) != 0 {
		t.Errorf("a refused apply left %v in %s", ents, policyDir)
	}
	if g.hasEvent("alice", adminapi.EventAdmin, "revoke-user") {
		t.Error("a refused revocation was done")
	}
}
