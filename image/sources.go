package image

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
)

// goListFormat prints, for each package in the build, either its source
// files (main module: Go, embedded, assembly, headers and .syso objects,
// everything the compiler and linker read) or its module (dependencies),
// with its replacement when go.mod replaces it.
const goListFormat = `{{if .Module}}{{if .Module.Main}}P {{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}` +
	`{{range .SFiles}} {{.}}{{end}}{{range .HFiles}} {{.}}{{end}}{{range .SysoFiles}} {{.}}{{end}}` +
	`{{else}}M {{.Module.Path}} {{.Module.Version}}{{with .Module.Replace}} => {{.Path}} {{.Version}}{{end}}{{end}}{{end}}`

// goInputs lists the main module's source files (relative to root) and the
// dependency modules (with their go.sum hashes from sumFile) of pkgs, as
// built with env in dir.
//
// go list takes either packages or .go files, not both: packages given as
// a file (test stand-ins) are listed by separate calls, and their files,
// outside the tree, are not recorded.
func goInputs(ctx context.Context, dir, root string, env []string, sumFile string, pkgs []string) ([]string, []GoModule, error) {
	var calls [][]string
	var named []string
	seen := map[string]bool{}
	for _, p := range pkgs {
		switch {
		case seen[p]:
		case strings.HasSuffix(p, ".go"):
			calls = append(calls, []string{p})
		default:
			named = append(named, p)
		}
		seen[p] = true
	}
	if len(named) > 0 {
		calls = append(calls, named)
	}
	var out []byte
	for _, args := range calls {
		o, err := goOutput(ctx, dir, env, append([]string{"list", "-deps", "-f", goListFormat}, args...)...)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, o...)
	}
	sums, err := goSums(sumFile)
	if err != nil {
		return nil, nil, err
	}
	var files []string
	var mods []GoModule
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 2 && f[0] == "P":
			rel, err := filepath.Rel(root, f[1])
			if err != nil || strings.HasPrefix(rel, "..") {
				continue // a stand-in given as a file (tests)
			}
			for _, name := range f[2:] {
				files = append(files, filepath.ToSlash(filepath.Join(rel, name)))
			}
		case len(f) >= 1 && f[0] == "M":
			// "M path version", or "M path version => path version" for a
			// module go.mod replaces by another module. A module replaced
			// by a local directory (no version, no go.sum hash) is code
			// the manifest cannot name: refused, never left out.
			path, version := "", ""
			switch {
			case len(f) == 3:
				path, version = f[1], f[2]
			case len(f) == 6 && f[3] == "=>":
				path, version = f[4], f[5]
			case len(f) >= 4 && f[3] == "=>":
				return nil, nil, fmt.Errorf("module %s is replaced by the directory %s: an image is built from modules pinned in go.sum only; remove the replace directive",
					f[1], strings.Join(f[4:], " "))
			default:
				return nil, nil, fmt.Errorf("go list: unexpected line %q", sc.Text())
			}
			sum, ok := sums[path+" "+version]
			if !ok {
				return nil, nil, fmt.Errorf("%s: no hash for module %s %s", sumFile, path, version)
			}
			m := GoModule{Path: path, Version: version, Sum: sum}
			if path != f[1] || version != f[2] {
				m.Replaces = f[1] + " " + f[2]
			}
			mods = append(mods, m)
		case len(f) > 0:
			return nil, nil, fmt.Errorf("go list: unexpected line %q", sc.Text())
		}
	}
	return files, mods, sc.Err()
}
