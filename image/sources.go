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
func goInputs(ctx context.Context, dir, root string, env []string, sumFile string, pkgs []string) ([]string, []GoModule, error) {
	out, err := goOutput(ctx, dir, env, append([]string{"list", "-deps", "-f", goListFormat}, pkgs...)...)
	if err != nil {
		return nil, nil, err
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
				return nil, nil, fmt.Errorf("package directory %s is outside the source tree %s", f[1], root)
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
