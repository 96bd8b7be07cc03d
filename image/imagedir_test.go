package image

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// An image that is not production goes by default to
// out/<board>-<variant>/, beside the production image in out/<board>/,
// which it neither replaces nor can be taken for; an output directory
// given with WithOutDir receives <board>/ whatever the variant.
func TestNonProductionImageHasItsOwnDirectory(t *testing.T) {
	src, cache := sourceRoot(t), cacheDir(t)
	work := t.TempDir()
	t.Chdir(work)
	b := testBoard(t, "qemu-x86_64")
	pkg := standin(t)
	build := func(opts ...Option) *Manifest {
		t.Helper()
		all := append([]Option{WithSourceDir(src), WithCacheDir(cache), withInitPackage(pkg), withServices(standinRows(pkg))}, opts...)
		m, err := Build(context.Background(), b, all...)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	prod := build()
	test := build(WithTestServices(true))
	if test.Variant != "test" || prod.Variant != Production {
		t.Fatalf("variants %q and %q, want production and test", prod.Variant, test.Variant)
	}
	for dir, want := range map[string]*Manifest{"out/qemu-x86_64": prod, "out/qemu-x86_64-test": test} {
		got, err := ReadManifest(filepath.Join(work, dir))
		if err != nil {
			t.Errorf("%s: %v", dir, err)
			continue
		}
		if got.Variant != want.Variant || got.ImageID != want.ImageID {
			t.Errorf("%s holds the %s image %s, want the %s image %s", dir, got.Variant, got.ImageID, want.Variant, want.ImageID)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(work, "out")); len(ents) != 2 {
		t.Errorf("out/ holds %d entries, want the two image directories", len(ents))
	}

	for _, tc := range []struct {
		opts []Option
		want string
	}{
		{nil, filepath.Join(work, "out", "qemu-x86_64")},
		{[]Option{WithDebug(true)}, filepath.Join(work, "out", "qemu-x86_64-debug")},
		{[]Option{WithDebug(true), WithTestServices(true)}, filepath.Join(work, "out", "qemu-x86_64-debug+test")},
		{[]Option{WithDemo(true)}, filepath.Join(work, "out", "qemu-x86_64-demo")},
		{[]Option{WithDebug(true), WithOutDir("out/demo")}, filepath.Join(work, "out", "demo", "qemu-x86_64")},
		{[]Option{WithOutDir("out")}, filepath.Join(work, "out", "qemu-x86_64")},
		{[]Option{WithOutDir("elsewhere"), WithTestServices(true)}, filepath.Join(work, "elsewhere", "qemu-x86_64")},
	} {
		got, err := ImageDir(b, append([]Option{WithSourceDir(src), WithCacheDir(cache)}, tc.opts...)...)
		if err != nil || got != tc.want {
			t.Errorf("ImageDir(%d options) = %q, %v; want %q", len(tc.opts), got, err, tc.want)
		}
	}
}

// A repro-check of an image that is not production compares the
// directory its builds wrote (<board>-<variant>), not <board>.
func TestReproCheckOfANonProductionImage(t *testing.T) {
	pkg := standin(t)
	var log bytes.Buffer
	m, err := ReproCheck(context.Background(), testBoard(t, "qemu-x86_64"), WithSourceDir(sourceRoot(t)),
		WithCacheDir(cacheDir(t)), WithLog(&log), WithTestServices(true), withInitPackage(pkg), withServices(standinRows(pkg)))
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log.String())
	}
	if m.Variant != "test" || len(m.Artifacts) != 2 {
		t.Errorf("repro-check of the test image: variant %q, artifacts %+v", m.Variant, m.Artifacts)
	}
}
