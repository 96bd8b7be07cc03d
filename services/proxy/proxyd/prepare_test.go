package proxyd

import (
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// prepare gives uid/gid 101 its directories and group read access to the
// policy directory, idempotently, and refuses a symlink planted where a
// directory belongs.
func TestPrepare(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown)")
	}
	root := t.TempDir()
	state, audit, policy := filepath.Join(root, "proxy"), filepath.Join(root, "audit"), filepath.Join(root, "policy")
	if err := os.Mkdir(policy, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(policy, "applied.cbor"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-uid", "101", "-gid", "101", "-own", state, "-own", audit, "-read", policy}
	for i := 0; i < 2; i++ {
		if err := prepare(args, io.Discard); err != nil {
			t.Fatalf("run %d: %v", i+1, err)
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
			t.Errorf("%s: %d:%d %v, want %d:%d %v", p, sys.Uid, sys.Gid, st.Mode(), uid, gid, mode)
		}
	}
	check(state, 101, 101, 0o700)
	check(audit, 101, 101, 0o700)
	check(policy, 0, 101, 0o750|os.ModeSetgid)
	check(filepath.Join(policy, "applied.cbor"), 0, 101, 0o640)

	evil := filepath.Join(root, "evil")
	if err := os.Symlink("/etc", evil); err != nil {
		t.Fatal(err)
	}
	if err := prepare([]string{"-uid", "101", "-gid", "101", "-own", evil}, io.Discard); err == nil {
		t.Fatal("prepare followed a symlink")
	}
	if err := prepare([]string{"-uid", "0", "-gid", "0", "-own", state}, io.Discard); err == nil {
		t.Fatal("prepare accepted uid 0")
	}
}
