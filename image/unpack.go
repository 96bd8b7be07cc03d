package image

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// unpackedComplete marks an unpacked package directory as whole; it is
// written last, before the directory is renamed into place.
const unpackedComplete = ".otgate-unpacked"

// unpackCached returns <cache>/unpacked/<sha256>/, the verified .deb at
// debPath unpacked (only paths with one of the prefixes). Unpacking the
// kernel package's xz data in Go takes most of a minute, so the result is
// kept: it is keyed by the package's verified sha256 and renamed into place
// only when complete, so a present directory is a whole, verified unpack.
func unpackCached(debPath, sum, cache string, prefixes []string) (string, error) {
	dir := filepath.Join(cache, "unpacked", sum)
	if _, err := os.Stat(filepath.Join(dir, unpackedComplete)); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), sum[:12]+".tmp-*")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp) // gone after a successful rename
	keep := func(name string) bool {
		for _, p := range prefixes {
			if name == strings.TrimSuffix(p, "/") || strings.HasPrefix(name, p) {
				return true
			}
		}
		return false
	}
	if err := extractDeb(debPath, tmp, keep); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, unpackedComplete), []byte(sum+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another build may have unpacked the same package meanwhile.
		if _, serr := os.Stat(filepath.Join(dir, unpackedComplete)); serr == nil {
			return dir, nil
		}
		return "", fmt.Errorf("unpack %s: %w", debPath, err)
	}
	return dir, nil
}
