package image

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otgate/otgate/board"
	"github.com/otgate/otgate/internal/bootcfg"
)

func TestUnknownBoard(t *testing.T) {
	_, err := board.Lookup("qemu-sparc")
	if !errors.Is(err, board.ErrUnknown) || !strings.Contains(err.Error(), "qemu-sparc") {
		t.Fatalf("Lookup(qemu-sparc) = %v, want ErrUnknown naming it", err)
	}
	out := t.TempDir()
	if _, err := Build(context.Background(), nil, WithOutDir(out)); !errors.Is(err, ErrNoBoard) {
		t.Fatalf("Build(nil) = %v, want ErrNoBoard", err)
	}
	assertNoImage(t, out)
}

// corruptServer serves bytes that are not the pinned package.
func corruptServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("not a kernel package"))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestKernelChecksumMismatch(t *testing.T) {
	b := testBoard(t, "qemu-x86_64")
	b.Kernel.Archives = []string{corruptServer(t).URL}
	cache, out := t.TempDir(), t.TempDir()
	// A corrupted cached copy: removed, downloaded again, still wrong.
	cached := filepath.Join(cache, "debs", b.Kernel.FileName())
	os.MkdirAll(filepath.Dir(cached), 0o755)
	if err := os.WriteFile(cached, []byte("truncated"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Build(context.Background(), b, WithSourceDir(sourceRoot(t)), WithCacheDir(cache), WithOutDir(out),
		withInitPackage(standin(t)))
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("Build with a corrupted package: %v, want ErrChecksum", err)
	}
	for _, want := range []string{b.Kernel.Package, b.Kernel.SHA256, "got "} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	t.Logf("error: %v", err)
	assertNoImage(t, out)
	ents, _ := os.ReadDir(filepath.Dir(cached))
	for _, e := range ents {
		t.Errorf("bad download left %s in the cache", e.Name())
	}
}

func TestNonexistentModule(t *testing.T) {
	b := testBoard(t, "qemu-x86_64")
	b.Modules = append(b.Modules, "no_such-module")
	out := t.TempDir()
	_, err := Build(context.Background(), b, WithSourceDir(sourceRoot(t)), WithCacheDir(cacheDir(t)), WithOutDir(out),
		withInitPackage(standin(t)))
	if !errors.Is(err, ErrNoModule) {
		t.Fatalf("Build with a missing module: %v, want ErrNoModule", err)
	}
	for _, want := range []string{"no_such-module", "qemu-x86_64", b.Kernel.Package} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	assertNoImage(t, out)
}

// unreachableBoard makes any download fail, proving that a bad service
// table is rejected before anything is fetched or built.
func unreachableBoard(t *testing.T) *board.Board {
	b := testBoard(t, "qemu-x86_64")
	srv := corruptServer(t)
	b.Kernel.Archives = []string{srv.URL}
	return b
}

func TestServiceTableRejected(t *testing.T) {
	svc := func(name, bin, pkg string, deps ...string) ServiceRow {
		return ServiceRow{Package: pkg, Service: bootcfg.Service{
			Name: name, Binary: bin, DependsOn: deps, Readiness: bootcfg.ReadyNotify}}
	}
	for _, tc := range []struct {
		name    string
		rows    []ServiceRow
		wantErr error
		want    string
	}{
		{"cycle", []ServiceRow{
			svc("a", "/bin/otgate-a", "PKG", "c"),
			svc("b", "/bin/otgate-a", "PKG", "a"),
			svc("c", "/bin/otgate-a", "PKG", "b"),
		}, bootcfg.ErrCycle, "a -> c -> b -> a"},
		{"unknown binary", []ServiceRow{
			svc("a", "/bin/otgate-a", "PKG"),
			svc("ghost", "/bin/otgate-ghost", ""),
		}, nil, `unknown binary "/bin/otgate-ghost"`},
		{"unknown dependency", []ServiceRow{
			svc("a", "/bin/otgate-a", "PKG", "nope"),
		}, bootcfg.ErrUnknownDep, `"nope"`},
		{"one binary two packages", []ServiceRow{
			svc("a", "/bin/otgate-a", "PKG"),
			svc("b", "/bin/otgate-a", "./cmd/otgate"),
		}, nil, "another row builds it"},
		{"multi-call link built from a package", []ServiceRow{
			svc("a", "/bin/otgate-a", "PKG"),
			{MultiCall: true, Service: bootcfg.Service{Name: "b", Binary: "/bin/otgate-a", Readiness: bootcfg.ReadyNotify}},
		}, nil, "is a link to /bin/otgate, but another row builds it"},
		{"multi-call row with a package", []ServiceRow{
			{MultiCall: true, Package: "PKG", Service: bootcfg.Service{Name: "b", Binary: "/bin/otgate-b", Readiness: bootcfg.ReadyNotify}},
		}, nil, "names no package"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkg := standin(t)
			for i := range tc.rows {
				if tc.rows[i].Package == "PKG" {
					tc.rows[i].Package = pkg
				}
			}
			cache, out := t.TempDir(), t.TempDir()
			_, err := Build(context.Background(), unreachableBoard(t), WithSourceDir(sourceRoot(t)),
				WithCacheDir(cache), WithOutDir(out), withInitPackage(pkg), withServices(tc.rows))
			if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build: %v, want %v naming %q", err, tc.wantErr, tc.want)
			}
			t.Logf("error: %v", err)
			assertNoImage(t, out)
			assertNoImage(t, cache) // nothing fetched
		})
	}
}

func TestTablesValidate(t *testing.T) {
	for _, test := range []bool{false, true} {
		c, err := newConfig([]Option{WithSourceDir(sourceRoot(t)), WithTestServices(test)})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := plan(testBoard(t, "qemu-x86_64"), c); err != nil {
			t.Errorf("test=%v: service table: %v", test, err)
		}
	}
}
