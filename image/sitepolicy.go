package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/otgate/otgate/site"
)

// The image's default site policy: rootfs/etc/otgate/site.yaml, compiled by
// the builder into defaultPolicyPath. The "policy" service row stores those
// exact bytes as the applied policy on a first boot, and init measures them
// when no policy is applied yet, so a first boot and the boots after it
// measure the same (see init/measure.go).
const (
	defaultSiteFile   = "etc/otgate/site.yaml"
	defaultPolicyPath = "/etc/otgate/site.cbor"
)

// addDefaultPolicy compiles the default site file, when rootfs has one,
// into the tree. A file that does not validate stops the build with the
// loader's file:line:field errors.
func addDefaultPolicy(tree *fileTree, sourceDir string, now time.Time) (bool, error) {
	src := filepath.Join(sourceDir, rootfsDir, filepath.FromSlash(defaultSiteFile))
	s, data, err := site.Load(src, site.Options{Now: now})
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("default site policy %s/%s: %w", rootfsDir, defaultSiteFile, err)
	}
	doc, err := site.Compile(s, src, data)
	if err != nil {
		return false, err
	}
	return true, tree.addData(defaultPolicyPath, 0o644, doc, "builder ("+rootfsDir+"/"+defaultSiteFile+")")
}
