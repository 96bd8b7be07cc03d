package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"

	"github.com/otgate/otgate/board"
)

// ErrNotReproducible is wrapped by ReproCheck's error when two builds
// differ.
var ErrNotReproducible = errors.New("image is not reproducible")

// ReproCheck proves that the image of b is reproducible: it copies the
// source tree (git ls-files -co --exclude-standard: tracked and untracked,
// not ignored, so uncommitted work is included) into two differently named
// temporary directories, builds in each, and compares every artifact byte
// for byte. It prints the sha256 of each artifact and returns the manifest
// of the first build; a difference is an error naming the first differing
// artifact. Both copies are removed afterwards; out/ is not touched.
func ReproCheck(ctx context.Context, b *board.Board, opts ...Option) (*Manifest, error) {
	if b == nil {
		return nil, ErrNoBoard
	}
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	files, err := sourceFiles(ctx, c.sourceDir)
	if err != nil {
		return nil, err
	}
	var outs [2]string
	var mans [2]*Manifest
	var srcs [2]string
	// Both copies come from one snapshot: the second is copied from the
	// first, so edits to the live tree during the check cannot differ.
	from := c.sourceDir
	for i, name := range []string{"otgate-repro-a-*", "otgate-repro-second-*"} {
		dir, err := os.MkdirTemp("", name)
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		srcs[i] = filepath.Join(dir, fmt.Sprintf("src%d", i))
		if err := copyFiles(from, srcs[i], files); err != nil {
			return nil, fmt.Errorf("repro-check: copy source tree: %w", err)
		}
		from = srcs[0]
	}
	for i, src := range srcs {
		dir := filepath.Dir(src)
		cc := *c
		cc.sourceDir, cc.outDir = src, filepath.Join(dir, "out")
		if cc.log != nil {
			fmt.Fprintf(cc.log, "repro-check: build %d of 2 in %s\n", i+1, src)
		}
		if mans[i], err = build(ctx, b, &cc); err != nil {
			return nil, fmt.Errorf("repro-check: build %d: %w", i+1, err)
		}
		outs[i] = cc.imageDir(b)
	}
	if err := compareDirs(outs[0], outs[1]); err != nil {
		return nil, fmt.Errorf("board %s: %w", b.Name, err)
	}
	if c.log != nil {
		for _, a := range mans[0].Artifacts {
			fmt.Fprintf(c.log, "%s  %s (%d bytes)\n", a.SHA256, a.Name, a.Size)
		}
		fmt.Fprintf(c.log, "repro-check: %s: %d artifacts and the manifest identical in both builds\n", b.Name, len(mans[0].Artifacts))
	}
	return mans[0], nil
}

// sourceFiles lists the tree like git ls-files -co --exclude-standard.
func sourceFiles(ctx context.Context, dir string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "git", "ls-files", "-z", "-c", "-o", "--exclude-standard")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git ls-files in %s: %w: %s", dir, err, stderr.String())
	}
	var files []string
	for _, f := range bytes.Split(out, []byte{0}) {
		if len(f) > 0 {
			files = append(files, string(f))
		}
	}
	return files, nil
}

// copyFiles copies the listed files (relative, '/'-separated) from src to
// dst, keeping the execute bit and symlinks; files listed by git but
// deleted in the working tree are skipped.
func copyFiles(src, dst string, files []string) error {
	for _, f := range files {
		from, to := filepath.Join(src, filepath.FromSlash(f)), filepath.Join(dst, filepath.FromSlash(f))
		st, err := os.Lstat(from)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		switch {
		case st.Mode()&os.ModeSymlink != 0:
			t, err := os.Readlink(from)
			if err != nil {
				return err
			}
			if err := os.Symlink(t, to); err != nil {
				return err
			}
		case st.Mode().IsRegular():
			if err := copyFile(from, to, st.Mode().Perm()); err != nil {
				return err
			}
		}
	}
	return nil
}

func copyFile(from, to string, perm os.FileMode) error {
	r, err := os.Open(from)
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// compareDirs compares the files of two image directories byte for byte.
func compareDirs(a, b string) error {
	names := func(d string) ([]string, error) {
		ents, err := os.ReadDir(d)
		if err != nil {
			return nil, err
		}
		var n []string
		for _, e := range ents {
			n = append(n, e.Name())
		}
		sort.Strings(n)
		return n, nil
	}
	na, err := names(a)
	if err != nil {
		return err
	}
	nb, err := names(b)
	if err != nil {
		return err
	}
	if fmt.Sprint(na) != fmt.Sprint(nb) {
		return fmt.Errorf("%w: artifact lists differ: %v vs %v", ErrNotReproducible, na, nb)
	}
	for _, n := range na {
		sa, err := fileSHA256(filepath.Join(a, n))
		if err != nil {
			return err
		}
		sb, err := fileSHA256(filepath.Join(b, n))
		if err != nil {
			return err
		}
		if sa != sb {
			return fmt.Errorf("%w: artifact %s differs: sha256 %s in build 1, %s in build 2", ErrNotReproducible, n, sa, sb)
		}
	}
	return nil
}
