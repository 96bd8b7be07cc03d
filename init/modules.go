package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
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
	path := func(i int) string { return filepath.Join(modDir, modules[i]) }
	errs := make([]error, len(modules))
	if workers <= 1 {
		for i := range modules {
			errs[i] = loadModule(path(i))
		}
	} else {
		weight := make([]int64, len(modules))
		for i := range modules {
			weight[i] = 1
			if fi, err := os.Stat(path(i)); err == nil {
				weight[i] += fi.Size()
			}
		}
		scheduleModules(deps, weight, workers, func(i int) { errs[i] = loadModule(path(i)) })
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

// scheduleModules calls load(i) for every module i once, on up to workers
// goroutines, each only after load has returned for all of deps[i]
// (indexes below i). It is a list scheduler: a free worker takes, among
// the modules whose dependencies are loaded, the one heading the heaviest
// chain still to load (weight: the module's size, a stand-in for its load
// time), so the long chains (nfnetlink -> nf_tables -> nft_*, jbd2 ->
// ext4) start first instead of ending the stage running alone.
func scheduleModules(deps [][]int, weight []int64, workers int, load func(i int)) {
	n := len(deps)
	dependents := make([][]int, n)
	waiting := make([]int, n)
	for i, ds := range deps {
		waiting[i] = len(ds)
		for _, d := range ds {
			dependents[d] = append(dependents[d], i)
		}
	}
	// Dependents come later in the list: one pass from the end.
	height := make([]int64, n)
	for i := n - 1; i >= 0; i-- {
		var tail int64
		for _, j := range dependents[i] {
			tail = max(tail, height[j])
		}
		height[i] = weight[i] + tail
	}
	var ready []int
	for i := range n {
		if waiting[i] == 0 {
			ready = append(ready, i)
		}
	}
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	unfinished := n
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			for {
				for len(ready) == 0 && unfinished > 0 {
					cond.Wait()
				}
				if len(ready) == 0 {
					return
				}
				best := 0
				for k, i := range ready {
					if height[i] > height[ready[best]] {
						best = k
					}
				}
				i := ready[best]
				ready = slices.Delete(ready, best, best+1)
				mu.Unlock()
				load(i)
				mu.Lock()
				unfinished--
				for _, j := range dependents[i] {
					if waiting[j]--; waiting[j] == 0 {
						ready = append(ready, j)
					}
				}
				cond.Broadcast()
			}
		}()
	}
	wg.Wait()
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
