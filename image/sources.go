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
// files (main module) or its module (dependencies).
const goListFormat = `{{if .Module}}{{if .Module.Main}}P {{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}` +
	`{{else}}M {{.Module.Path}} {{.Module.Version}}{{end}}{{end}}`

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
		case len(f) == 3 && f[0] == "M":
			sum, ok := sums[f[1]+" "+f[2]]
			if !ok {
				return nil, nil, fmt.Errorf("%s: no hash for module %s %s", sumFile, f[1], f[2])
			}
			mods = append(mods, GoModule{Path: f[1], Version: f[2], Sum: sum})
		}
	}
	return files, mods, sc.Err()
}
