package identity

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestCorruptOrMissingStateNeverCreatesNewIdentity damages each state file
// in turn and checks that Open (with Create set, as on every boot) fails
// with a *StateError naming the file, and creates nothing.
func TestCorruptOrMissingStateNeverCreatesNewIdentity(t *testing.T) {
	_, opener := startTPM(t)
	base := testConfig(t, opener)
	id, err := Open(base)
	if err != nil {
		t.Fatal(err)
	}
	id.Close()
	pristine := map[string][]byte{}
	for _, f := range requiredFiles {
		b, err := os.ReadFile(filepath.Join(base.StateDir, f))
		if err != nil {
			t.Fatal(err)
		}
		pristine[f] = b
	}
	flipPrivate := func(b []byte) []byte {
		var rec keyRecord
		if err := decMode.Unmarshal(b, &rec); err != nil {
			t.Fatal(err)
		}
		rec.Private[len(rec.Private)-1] ^= 0x01
		out, _ := encMode.Marshal(&rec)
		return out
	}
	cases := []struct {
		name   string
		file   string
		damage func([]byte) []byte // nil: delete the file
		kind   error
	}{
		{"key missing", KeyFile, nil, ErrStateMissing},
		{"key truncated", KeyFile, func(b []byte) []byte { return b[:len(b)/2] }, ErrStateCorrupt},
		{"key empty", KeyFile, func([]byte) []byte { return nil }, ErrStateCorrupt},
		{"key private blob bit flip", KeyFile, flipPrivate, ErrStateCorrupt},
		{"seal missing", SealFile, nil, ErrStateMissing},
		{"seal garbage", SealFile, func(b []byte) []byte { return bytes.Repeat([]byte{0xff}, len(b)) }, ErrStateCorrupt},
		{"device missing", DeviceFile, nil, ErrStateMissing},
		{"device truncated", DeviceFile, func(b []byte) []byte { return b[:10] }, ErrStateCorrupt},
		{"workload CA missing", WorkloadCAFile, nil, ErrStateMissing},
		{"workload CA truncated", WorkloadCAFile, func(b []byte) []byte { return b[:len(b)-3] }, ErrStateCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for f, b := range pristine {
				if err := os.WriteFile(filepath.Join(base.StateDir, f), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(base.StateDir, tc.file)
			if tc.damage == nil {
				os.Remove(path)
			} else {
				os.WriteFile(path, tc.damage(pristine[tc.file]), 0o600)
			}
			before := snapshot(t, base.StateDir)
			id, err := Open(base)
			if err == nil {
				id.Close()
				t.Fatal("Open succeeded on damaged state")
			}
			var se *StateError
			if !errors.As(err, &se) || !errors.Is(err, tc.kind) {
				t.Fatalf("got %v, want a *StateError of kind %v", err, tc.kind)
			}
			if se.Path != path {
				t.Fatalf("error names %s, want %s", se.Path, path)
			}
			t.Logf("%v", err)
			if after := snapshot(t, base.StateDir); after != before {
				t.Fatalf("state directory changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}

	// An empty directory (first boot) is the only case that creates, and
	// only with Create set.
	empty := base
	empty.StateDir = filepath.Join(t.TempDir(), "identity")
	empty.Create = false
	if _, err := Open(empty); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("Open without Create on an empty dir: got %v, want ErrNoIdentity", err)
	}
}

// snapshot lists the names and contents of dir's files.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var buf bytes.Buffer
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		buf.WriteString(p)
		buf.Write(b)
		return nil
	})
	return buf.String()
}
