package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/otgate/otgate/internal/bootcfg"
)

// Before a service runs as uid 101, init gives it its owned directories
// (created, 0700, entries handed over) and group read access to another
// one: the service can write the first and read, not change, the second.
// A second boot finds everything in place and changes nothing.
func TestServiceDirectories(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown, switching to uid 101)")
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	root := t.TempDir()
	for _, d := range []string{root, filepath.Dir(root)} { // uid 101 walks down to them
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	state, run, policy := filepath.Join(root, "state"), filepath.Join(root, "run", "svc"), filepath.Join(root, "policy")
	if err := os.Mkdir(state, 0o755); err != nil {
		t.Fatal(err)
	}
	// A root tool left a file in the state directory.
	if err := os.WriteFile(filepath.Join(state, "store"), []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(policy, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(policy, "applied.cbor"), []byte("policy"), 0o600); err != nil {
		t.Fatal(err)
	}
	script := "cat " + policy + "/applied.cbor && echo && cat " + state + "/store && echo && echo x > " + run + "/sock && " +
		"if echo y > " + policy + "/applied.cbor 2>/dev/null; then echo policy writable; else echo policy read-only; fi"
	row := bootcfg.Service{Name: "svc", Binary: sh, Args: []string{"-c", script}, Readiness: bootcfg.ReadyExit,
		UID: 101, GID: 101, OwnedDirs: []string{state, run}, GroupReadDirs: []string{policy}}
	cfg := &bootcfg.Config{Services: []bootcfg.Service{row}, CrashLoop: bootcfg.CrashLoop{Restarts: 5, Window: 30e9}, StopGrace: 1e9}
	if err := cfg.Validate(nil); err != nil {
		t.Fatal(err)
	}
	for boot := 1; boot <= 2; boot++ {
		_, log := runSupervisor(t, cfg)
		waitLine(t, log, "init: svc done (")
		lines := strings.Join(log.Lines(), "\n")
		for _, want := range []string{
			"init: svc: " + state + ", " + run + " owned by 101:101 (0700); " + policy + " readable by group 101 (1 files)",
			"svc: policy", "svc: s", "svc: policy read-only",
		} {
			if !strings.Contains(lines, want) {
				t.Fatalf("boot %d: no line %q in:\n%s", boot, want, lines)
			}
		}
		check := func(p string, uid, gid uint32, mode os.FileMode) {
			t.Helper()
			st, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			sys := st.Sys().(*syscall.Stat_t)
			if sys.Uid != uid || sys.Gid != gid || st.Mode()&(os.ModePerm|os.ModeSetgid) != mode {
				t.Errorf("boot %d: %s: %d:%d %v, want %d:%d %v", boot, p, sys.Uid, sys.Gid, st.Mode(), uid, gid, os.FileMode(mode))
			}
		}
		check(state, 101, 101, 0o700)
		check(filepath.Join(state, "store"), 101, 101, 0o600)
		check(run, 101, 101, 0o700)
		check(filepath.Join(run, "sock"), 101, 101, 0o644)
		check(policy, 0, 101, 0o750|os.ModeSetgid)
		check(filepath.Join(policy, "applied.cbor"), 0, 101, 0o640)
	}
}

// A symlink planted where a service's directory belongs is never
// followed: the service does not start, and the log names the path.
func TestServiceDirectorySymlinkRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown)")
	}
	target := t.TempDir()
	evil := filepath.Join(t.TempDir(), "state")
	if err := os.Symlink(target, evil); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	row := svc("svc", bootcfg.ReadyNotify, "-mode=steady")
	row.UID, row.GID, row.OwnedDirs = 101, 101, []string{evil}
	cfg := &bootcfg.Config{Services: []bootcfg.Service{row}, CrashLoop: bootcfg.CrashLoop{Restarts: 5, Window: 30e9}, StopGrace: 1e9}
	_, log := runSupervisor(t, cfg)
	waitLine(t, log, "init: svc: directories: "+evil+": not a directory")
	st, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	if sys := st.Sys().(*syscall.Stat_t); sys.Uid != 0 || sys.Gid != 0 || st.Mode() != before.Mode() {
		t.Errorf("the symlink's target changed: %d:%d %v, was 0:0 %v", sys.Uid, sys.Gid, st.Mode(), before.Mode())
	}
	if lineIndex(log.Lines(), "init: svc ready") >= 0 {
		t.Error("svc started with a planted symlink for its directory")
	}
}
