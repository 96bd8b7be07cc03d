package image

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// The go env file (go env -w) can set GOEXPERIMENT and GOFIPS140, which
// change every binary; an empty variable does not override it. The
// builder's go commands do not read it, and keep only where modules come
// from.
func TestGoEnvIgnoresGoEnvFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(file, []byte("GOFIPS140=latest\nGOEXPERIMENT=nogreenteagc\nGOAMD64=v3\n"+
		"GOPROXY=https://proxy.example.invalid/go\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOENV", file)
	t.Setenv("GOFIPS140", "latest")
	t.Setenv("GOEXPERIMENT", "")
	t.Setenv("GOPROXY", "")
	env, err := goEnv(testBoard(t, "qemu-x86_64"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := goOutput(context.Background(), sourceRoot(t), env, "env", "-json",
		"GOFIPS140", "GOEXPERIMENT", "GOAMD64", "CGO_ENABLED", "GOPROXY")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"GOFIPS140": "off", "GOEXPERIMENT": "", "GOAMD64": "v1", "CGO_ENABLED": "0",
		"GOPROXY": "https://proxy.example.invalid/go",
	} {
		if got[k] != want {
			t.Errorf("go env %s = %q in the build environment, want %q", k, got[k], want)
		}
	}
}
