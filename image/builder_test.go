package image

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// The manifest names the program that ran the build: the toolchain that
// compiled it (runtime.Version) and its module build info, as the running
// builder (here the test binary) reports them.
func TestManifestNamesTheBuilder(t *testing.T) {
	b := testBoard(t, "qemu-x86_64")
	out := t.TempDir()
	pkg := standin(t)
	if _, err := Build(context.Background(), b, WithSourceDir(sourceRoot(t)), WithCacheDir(cacheDir(t)), WithOutDir(out),
		withInitPackage(pkg), withServices(standinRows(pkg))); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(out, b.Name, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Inputs struct {
			Builder struct {
				GoVersion string `json:"go_version"`
				Path      string `json:"path"`
				Main      struct{ Path string }
				Modules   []struct{ Path, Version, Sum string } `json:"go_modules"`
				Settings  []struct{ Key, Value string }
			} `json:"builder"`
		} `json:"inputs"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	got := m.Inputs.Builder
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		t.Fatal("test binary without build info")
	}
	if got.GoVersion != runtime.Version() || got.Path != bi.Path || got.Main.Path != "github.com/otgate/otgate" {
		t.Errorf("manifest builder: go %q, path %q, main %q; want %q, %q, github.com/otgate/otgate",
			got.GoVersion, got.Path, got.Main.Path, runtime.Version(), bi.Path)
	}
	mods := map[string]string{}
	for _, mod := range got.Modules {
		mods[mod.Path] = mod.Version + " " + mod.Sum
	}
	for _, d := range bi.Deps {
		if d.Replace == nil && mods[d.Path] != d.Version+" "+d.Sum {
			t.Errorf("manifest builder module %s: %q, the builder has %s %s", d.Path, mods[d.Path], d.Version, d.Sum)
		}
	}
	if len(got.Modules) != len(bi.Deps) {
		t.Errorf("manifest names %d builder modules, the builder has %d", len(got.Modules), len(bi.Deps))
	}
	settings := map[string]string{}
	for _, s := range got.Settings {
		settings[s.Key] = s.Value
	}
	for _, s := range bi.Settings {
		if !strings.HasPrefix(s.Key, "vcs") && settings[s.Key] != s.Value {
			t.Errorf("manifest builder setting %s=%q, the builder has %q", s.Key, settings[s.Key], s.Value)
		}
	}
	if settings["GOARCH"] != runtime.GOARCH {
		t.Errorf("manifest builder settings %v lack GOARCH=%s", got.Settings, runtime.GOARCH)
	}
}

// Two builders that differ in their toolchain, a module or a build setting
// give different manifests; the same builder gives the same bytes, and a
// version control stamp (whether the builder's tree was committed) does
// not count: the sources are recorded file by file.
func TestBuildersToldApart(t *testing.T) {
	base := func() *debug.BuildInfo {
		return &debug.BuildInfo{
			GoVersion: "go1.26.8",
			Path:      "github.com/otgate/otgate/image/cmd/otgate-image",
			Main:      debug.Module{Path: "github.com/otgate/otgate", Version: "(devel)"},
			Deps: []*debug.Module{
				{Path: "github.com/u-root/u-root", Version: "v0.14.0", Sum: "h1:uroot="},
				{Path: "github.com/klauspost/compress", Version: "v1.18.0", Sum: "h1:zstd="},
			},
			Settings: []debug.BuildSetting{{Key: "-trimpath", Value: "true"}, {Key: "CGO_ENABLED", Value: "0"}, {Key: "GOARCH", Value: "amd64"}},
		}
	}
	manifest := func(goVersion string, bi *debug.BuildInfo) []byte {
		t.Helper()
		b, err := builderOf(goVersion, bi)
		if err != nil {
			t.Fatal(err)
		}
		m := &Manifest{Board: "qemu-x86_64", Variant: Production}
		m.Inputs.Builder = b
		out, err := m.marshal()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	ref := manifest("go1.26.8", base())
	if again := manifest("go1.26.8", base()); !bytes.Equal(ref, again) {
		t.Errorf("the same builder gives two manifests:\n%s\n%s", ref, again)
	}
	for name, change := range map[string]func(bi *debug.BuildInfo) string{
		"toolchain": func(*debug.BuildInfo) string { return "go1.26.7" },
		"module version": func(bi *debug.BuildInfo) string {
			bi.Deps[1].Version, bi.Deps[1].Sum = "v1.17.11", "h1:older="
			return "go1.26.8"
		},
		"module replaced": func(bi *debug.BuildInfo) string {
			bi.Deps[0].Replace = &debug.Module{Path: "example.org/fork/u-root", Version: "v0.14.1", Sum: "h1:fork="}
			return "go1.26.8"
		},
		"build setting": func(bi *debug.BuildInfo) string {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: "GOEXPERIMENT", Value: "nogreenteagc"})
			return "go1.26.8"
		},
		"main package": func(bi *debug.BuildInfo) string {
			bi.Path = "github.com/otgate/otgate/image.test"
			return "go1.26.8"
		},
	} {
		bi := base()
		if m := manifest(change(bi), bi); bytes.Equal(ref, m) {
			t.Errorf("builders that differ in their %s give the same manifest", name)
		}
	}
	bi := base()
	bi.Settings = append(bi.Settings, debug.BuildSetting{Key: "vcs", Value: "git"}, debug.BuildSetting{Key: "vcs.modified", Value: "true"})
	if m := manifest("go1.26.8", bi); !bytes.Equal(ref, m) {
		t.Errorf("a vcs stamp changes the manifest:\n%s", m)
	}

	bi = base()
	bi.Deps[0].Replace = &debug.Module{Path: "../u-root"}
	if _, err := builderOf("go1.26.8", bi); err == nil || !strings.Contains(err.Error(), "github.com/u-root/u-root") || !strings.Contains(err.Error(), "../u-root") {
		t.Errorf("a builder module replaced by a directory: %v, want an error naming both", err)
	}
}
