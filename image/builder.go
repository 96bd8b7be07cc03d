package image

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// runningBuilder describes the program running the build (see Builder).
func runningBuilder() (Builder, error) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Builder{}, errors.New("the image builder has no module build info (built outside module mode?): the manifest cannot name it; build it with go run ./image/cmd/otgate-image")
	}
	return builderOf(runtime.Version(), bi)
}

// builderOf is the Builder of a program compiled by goVersion with the
// build info bi. A module replaced by a local directory (no version, no
// hash) cannot be named and is an error, as for the image's own modules.
func builderOf(goVersion string, bi *debug.BuildInfo) (Builder, error) {
	b := Builder{
		GoVersion: goVersion,
		Path:      bi.Path,
		Main:      GoModule{Path: bi.Main.Path, Version: bi.Main.Version, Sum: bi.Main.Sum},
	}
	for _, d := range bi.Deps {
		m := GoModule{Path: d.Path, Version: d.Version, Sum: d.Sum}
		if r := d.Replace; r != nil {
			if r.Version == "" {
				return Builder{}, fmt.Errorf("image builder: module %s %s is replaced by the directory %s: a builder is built from modules pinned in go.sum only; remove the replace directive",
					d.Path, d.Version, r.Path)
			}
			m = GoModule{Path: r.Path, Version: r.Version, Sum: r.Sum, Replaces: d.Path + " " + d.Version}
		}
		b.Modules = append(b.Modules, m)
	}
	b.Modules = sortModules(b.Modules)
	for _, s := range bi.Settings {
		if strings.HasPrefix(s.Key, "vcs.") || s.Key == "vcs" {
			continue
		}
		b.Settings = append(b.Settings, BuildSetting{Key: s.Key, Value: s.Value})
	}
	return b, nil
}
