package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// loadModules loads the modules (paths relative to modDir), which the
// image builder listed with their dependencies first. deps[i] are the
// indexes of the modules Modules[i] needs loaded first (bootcfg
// ModuleDeps): modules with no path between them load at the same time,
// one per CPU, the way udev loads a desktop's drivers; without deps, or
// with one CPU, they load one at a time in order. A module already loaded
// is fine; any other failure is logged, naming the module, and loading
// goes on (its dependents are still tried: the kernel names what they
// miss). It returns the number loaded.
func loadModules(log *logger, modDir string, modules []string, deps [][]int) int {
	start := time.Now()
	workers := runtime.NumCPU()
	if len(deps) != len(modules) {
		deps, workers = nil, 1
	}
	errs := make([]error, len(modules))
	if workers <= 1 {
		for i, m := range modules {
			errs[i] = loadModule(filepath.Join(modDir, m))
		}
	} else {
		done := make([]chan struct{}, len(modules))
		for i := range done {
			done[i] = make(chan struct{})
		}
		slots := make(chan struct{}, workers)
		var wg sync.WaitGroup
		for i, m := range modules {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer close(done[i])
				for _, d := range deps[i] {
					<-done[d]
				}
				slots <- struct{}{}
				errs[i] = loadModule(filepath.Join(modDir, m))
				<-slots
			}()
		}
		wg.Wait()
	}
	loaded := 0
	for i, err := range errs {
		if err != nil {
			log.Printf("module %s: %v", modules[i], err)
			continue
		}
		loaded++
	}
	if len(modules) > 0 {
		log.Printf("loaded %d of %d modules (%s, %d at a time)", loaded, len(modules), secs(time.Since(start)), workers)
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
