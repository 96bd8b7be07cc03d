package image

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// goModule writes a small main module below a new directory: go.mod with
// the extra lines, go.sum with golang.org/x/sys's hashes from the otgate
// tree, and the files given (path: content). It returns the directory.
func goModule(t *testing.T, modExtra string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	sums, err := os.ReadFile(filepath.Join(sourceRoot(t), "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	var sysSums []string
	for _, l := range strings.Split(string(sums), "\n") {
		if strings.HasPrefix(l, "golang.org/x/sys ") {
			sysSums = append(sysSums, l)
		}
	}
	files["go.mod"] = "module example.com/m\n\ngo 1.26.0\n\n" + modExtra
	files["go.sum"] = strings.Join(sysSums, "\n") + "\n"
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const mainUsingSys = "package main\n\nimport \"golang.org/x/sys/unix\"\n\nfunc main() { _ = unix.Getpid() }\n"

// Every file of the main module the compiler or linker reads is a source
// of the manifest: Go and embedded files, and assembly, headers and .syso
// objects too (they change the binary as much).
func TestGoInputsListAssemblyAndObjects(t *testing.T) {
	dir := goModule(t, "", map[string]string{
		"cmd/x/main.go":         "package main\n\nfunc add(a, b int) int\n\nfunc main() { println(add(1, 2)) }\n",
		"cmd/x/add_amd64.s":     "#include \"textflag.h\"\n#include \"add.h\"\n\nTEXT ·add(SB),NOSPLIT,$0-24\n\tRET\n",
		"cmd/x/add.h":           "// nothing\n",
		"cmd/x/rsrc_amd64.syso": "not really an object",
	})
	env, err := goEnv(testBoard(t, "qemu-x86_64"))
	if err != nil {
		t.Fatal(err)
	}
	files, _, err := goInputs(context.Background(), dir, dir, env, filepath.Join(dir, "go.sum"), []string{"./cmd/x"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cmd/x/main.go", "cmd/x/add_amd64.s", "cmd/x/add.h", "cmd/x/rsrc_amd64.syso"} {
		if !slices.Contains(files, want) {
			t.Errorf("sources %v lack %s", files, want)
		}
	}
}

// A module go.mod replaces is recorded as what was compiled (the
// replacement, with its go.sum hash) and what it replaces; one replaced
// by a local directory (code no go.sum pins) is refused, never silently
// left out of the manifest.
func TestGoInputsReplacedModules(t *testing.T) {
	env, err := goEnv(testBoard(t, "qemu-x86_64"))
	if err != nil {
		t.Fatal(err)
	}
	dir := goModule(t, "require golang.org/x/sys v0.10.0\n\nreplace golang.org/x/sys => golang.org/x/sys v0.49.0\n",
		map[string]string{"main.go": mainUsingSys})
	_, mods, err := goInputs(context.Background(), dir, dir, env, filepath.Join(dir, "go.sum"), []string{"."})
	if err != nil {
		t.Fatal(err)
	}
	if len(mods) == 0 || mods[0].Path != "golang.org/x/sys" || mods[0].Version != "v0.49.0" ||
		mods[0].Replaces != "golang.org/x/sys v0.10.0" || !strings.HasPrefix(mods[0].Sum, "h1:") {
		t.Errorf("modules %+v, want golang.org/x/sys v0.49.0 with its hash, replacing v0.10.0", mods)
	}

	local := goModule(t, "require golang.org/x/sys v0.49.0\n\nreplace golang.org/x/sys => ./sys\n", map[string]string{
		"main.go":          mainUsingSys,
		"sys/go.mod":       "module golang.org/x/sys\n\ngo 1.26.0\n",
		"sys/unix/unix.go": "package unix\n\nfunc Getpid() int { return 42 }\n",
	})
	_, mods, err = goInputs(context.Background(), local, local, env, filepath.Join(local, "go.sum"), []string{"."})
	t.Logf("error: %v", err)
	if err == nil || !strings.Contains(err.Error(), "golang.org/x/sys") || !strings.Contains(err.Error(), "./sys") {
		t.Fatalf("goInputs with a local replacement: modules %+v, error %v; want an error naming the module and the directory", mods, err)
	}
}
