package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// loadModules loads each module (a path relative to modDir) in the given
// order, which the image builder resolved so that dependencies come first.
// A module already loaded is fine; any other failure is logged, naming the
// module, and loading goes on. It returns the number loaded.
func loadModules(log *logger, modDir string, modules []string) int {
	start := time.Now()
	loaded := 0
	for _, m := range modules {
		if err := loadModule(filepath.Join(modDir, m)); err != nil {
			log.Printf("module %s: %v", m, err)
			continue
		}
		loaded++
	}
	if len(modules) > 0 {
		log.Printf("loaded %d of %d modules (%s)", loaded, len(modules), secs(time.Since(start)))
	}
	return loaded
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("finit_module: %w", err)
	}
	return nil
}
