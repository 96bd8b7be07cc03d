package client

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParseGate(t *testing.T) {
	for in, want := range map[string]string{
		"otgate://gate.plant:9443": "gate.plant:9443",
		"https://gate.plant":       "gate.plant:" + DefaultPort,
		"10.0.0.1":                 "10.0.0.1:" + DefaultPort,
		"[fd00::1]":                "[fd00::1]:" + DefaultPort,
		"gate:1234":                "gate:1234",
	} {
		got, err := ParseGate(in)
		if err != nil || got != want {
			t.Errorf("ParseGate(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "ftp://gate", "otgate://"} {
		if _, err := ParseGate(bad); err == nil {
			t.Errorf("ParseGate(%q) accepted", bad)
		}
	}
}

func TestProfileFilesAndErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "otgate")
	if _, err := Open(dir); err != ErrNoProfile {
		t.Fatalf("Open of an empty dir: %v, want ErrNoProfile", err)
	}
	if err := saveProfile(dir, &Profile{Gate: "g:1", Pin: "ab"}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v, %v", st.Mode().Perm(), err)
	}
	if st, err := os.Stat(filepath.Join(dir, ProfileFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("profile mode %v, %v", st.Mode().Perm(), err)
	}
	os.WriteFile(filepath.Join(dir, ProfileFile), []byte("{not json"), 0o600)
	if _, err := LoadProfile(dir); err == nil {
		t.Fatal("a corrupt profile loaded")
	}
	if err := RemoveProfile(dir); err != nil {
		t.Fatal(err)
	}
}
