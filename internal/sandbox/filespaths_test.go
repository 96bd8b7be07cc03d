//go:build linux

package sandbox

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestAbsoluteAndAdd(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, abs, none := "state/x", "/perm/y", ""
	if err := Absolute(&rel, &abs, &none); err != nil {
		t.Fatal(err)
	}
	if rel != filepath.Join(wd, "state/x") || abs != "/perm/y" || none != "" {
		t.Fatalf("Absolute: %q %q %q", rel, abs, none)
	}

	var f Files
	f.AddWrite("/perm/a")
	f.AddRead("/perm/policy")
	f.AddRead("/perm/a") // already writable: not also readable
	f.AddWrite("/perm/a")
	f.AddReadIfExists("/dev/rtc0")
	f.AddWrite("/dev/rtc0")
	f.AddWrite("/run/b")
	want := Files{Read: []string{"/perm/policy"}, ReadIfExists: []string{"/dev/rtc0"}, Write: []string{"/perm/a", "/run/b"}}
	if !reflect.DeepEqual(f, want) {
		t.Fatalf("Add: %+v, want %+v", f, want)
	}
}
