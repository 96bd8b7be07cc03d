// Package image is the reproducible image builder: it turns a board
// definition (package board) and this source tree into out/<board>/, the
// appliance's kernel, its initramfs (PID 1, the otgate binaries, the board's
// kernel modules with a generated modules.dep, the rootfs files and
// /etc/otgate/boot.cbor), for UEFI boards a GPT disk image and its qcow2,
// and manifest.json naming the sha256 of every artifact and every input.
//
// Two builds of the same inputs give the same bytes, whatever directory the
// source tree is in (see ReproCheck). Downloads (the Debian kernel and
// systemd-boot packages) are verified against the sha256 pinned in the board
// definition and cached.
//
// An image that is not production (debug shell, test services or demo
// credentials: see Manifest.Variant) goes by default to
// out/<board>-<variant>/, e.g. out/qemu-x86_64-debug/, so that it never
// replaces the production image in out/<board>/ nor is taken for it. An
// output directory given with WithOutDir receives <board>/ whatever the
// variant: its caller chose it (see ImageDir).
//
// Atomicity: a build writes into out/<board>.tmp-XXXX and renames it over
// out/<board> only when everything succeeded. A failed build removes its
// temporary directory and leaves the previous good out/<board>, if any,
// untouched, so out/<board> always holds a complete image or nothing.
package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/otgate/otgate/board"
)

// Artifact file names inside out/<board>/.
const (
	KernelFile    = "kernel"
	InitramfsFile = "initramfs"
	DiskFile      = "disk.img"
	QCOW2File     = "disk.qcow2"
	ManifestFile  = "manifest.json"
)

// ErrNoBoard is returned by Build for a nil board.
var ErrNoBoard = errors.New("image: no board given")

// Option configures Build and ReproCheck.
type Option func(*config) error

type config struct {
	outDir string
	// outDirSet says outDir was given (WithOutDir): the image goes to
	// <outDir>/<board> whatever its variant.
	outDirSet bool
	sourceDir string
	cacheDir  string
	debug     bool
	test      bool
	demo      bool
	log       io.Writer
	// services overrides the service table (tests).
	services []ServiceRow
	// initPkg overrides the package built as /init (tests).
	initPkg string
}

// DefaultOutDir is the directory, relative to the working directory, that
// receives the image when no WithOutDir is given: <board>/ for a
// production image, <board>-<variant>/ for any other.
const DefaultOutDir = "out"

// WithOutDir sets the directory that receives <board>/, whatever the
// image's variant (default: DefaultOutDir, where an image that is not
// production gets <board>-<variant>/).
func WithOutDir(dir string) Option {
	return func(c *config) error {
		if dir == "" {
			return errors.New("image: WithOutDir: empty directory")
		}
		c.outDir, c.outDirSet = dir, true
		return nil
	}
}

// WithSourceDir sets the root of the otgate source tree to build from
// (default: the working directory).
func WithSourceDir(dir string) Option {
	return func(c *config) error {
		if dir == "" {
			return errors.New("image: WithSourceDir: empty directory")
		}
		c.sourceDir = dir
		return nil
	}
}

// WithCacheDir sets the download cache (default $OTGATE_CACHE, else
// ~/.cache/otgate).
func WithCacheDir(dir string) Option {
	return func(c *config) error {
		if dir == "" {
			return errors.New("image: WithCacheDir: empty directory")
		}
		c.cacheDir = dir
		return nil
	}
}

// WithDebug adds u-root's shell and core commands (one busybox-style
// binary at /bin/bb) for serial-console diagnostics.
func WithDebug(on bool) Option {
	return func(c *config) error { c.debug = on; return nil }
}

// WithTestServices adds the test-only service table (package
// internal/testsvc) and enables init's test hooks. Never for release images.
func WithTestServices(on bool) Option {
	return func(c *config) error { c.test = on; return nil }
}

// WithLog sends progress lines to w; nil is quiet.
func WithLog(w io.Writer) Option {
	return func(c *config) error { c.log = w; return nil }
}

// withServices replaces the service table (tests of bad tables).
func withServices(rows []ServiceRow) Option {
	return func(c *config) error { c.services = rows; return nil }
}

// withInitPackage builds /init from pkg (a directory or import path)
// instead of ./init (tests that must not depend on the real PID 1).
func withInitPackage(pkg string) Option {
	return func(c *config) error { c.initPkg = pkg; return nil }
}

func newConfig(opts []Option) (*config, error) {
	c := &config{outDir: DefaultOutDir, sourceDir: "."}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	if c.cacheDir == "" {
		c.cacheDir = os.Getenv("OTGATE_CACHE")
	}
	if c.cacheDir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("image: no cache directory: set OTGATE_CACHE: %w", err)
		}
		c.cacheDir = filepath.Join(home, ".cache", "otgate")
	}
	var err error
	if c.sourceDir, err = filepath.Abs(c.sourceDir); err != nil {
		return nil, err
	}
	if c.outDir, err = filepath.Abs(c.outDir); err != nil {
		return nil, err
	}
	if c.cacheDir, err = filepath.Abs(c.cacheDir); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(c.sourceDir, "go.mod")); err != nil {
		return nil, fmt.Errorf("image: source directory %s is not the otgate tree: %w", c.sourceDir, err)
	}
	if c.initPkg == "" {
		c.initPkg = "./init"
	}
	if c.services == nil {
		c.services = ProductionServices
		if c.test {
			c.services = append(append(slices.Clone(ProductionServices), TestServices...), TestPolicyServices...)
		}
		if c.demo {
			c.services = append(append([]ServiceRow(nil), c.services...), DemoServices...)
		}
	}
	return c, nil
}

// imageDir is the directory the image of b goes to: <out>/<board> with
// WithOutDir, else out/<board> for a production image and
// out/<board>-<variant> for any other.
func (c *config) imageDir(b *board.Board) string {
	name := b.Name
	if v := variant(c); !c.outDirSet && v != Production {
		name += "-" + v
	}
	return filepath.Join(c.outDir, name)
}

// ImageDir is the absolute path of the directory Build writes the image
// of b to with opts (see the package comment).
func ImageDir(b *board.Board, opts ...Option) (string, error) {
	if b == nil {
		return "", ErrNoBoard
	}
	c, err := newConfig(opts)
	if err != nil {
		return "", err
	}
	return c.imageDir(b), nil
}

// Build builds the image of b into ImageDir(b, opts...) and returns its
// manifest. See the package comment for what it writes and the atomicity
// rule.
func Build(ctx context.Context, b *board.Board, opts ...Option) (*Manifest, error) {
	if b == nil {
		return nil, ErrNoBoard
	}
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return build(ctx, b, c)
}
