package main

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// The module scheduler loads every module once, never before its
// dependencies returned, at most workers at a time, and starts the
// heaviest chain first.
func TestScheduleModules(t *testing.T) {
	// 0 crc -> 1 libcrc -> 2 nf_tables -> 3, 4, 5 nft_*; 6 mbcache ->
	// 7 ext4 (heavy); 8, 9 leaves.
	deps := [][]int{{}, {0}, {1}, {2}, {2}, {2}, {}, {6}, {}, {}}
	weight := []int64{10, 20, 600, 50, 50, 50, 40, 2000, 30, 30}
	for _, workers := range []int{1, 2, 3} {
		var mu sync.Mutex
		var order []int
		done := make([]bool, len(deps))
		running, most := 0, 0
		scheduleModules(deps, weight, workers, func(i int) {
			mu.Lock()
			for _, d := range deps[i] {
				if !done[d] {
					t.Errorf("workers %d: module %d started before its dependency %d finished", workers, i, d)
				}
			}
			if slices.Contains(order, i) {
				t.Errorf("workers %d: module %d loaded twice", workers, i)
			}
			order = append(order, i)
			running++
			most = max(most, running)
			mu.Unlock()
			time.Sleep(time.Millisecond)
			mu.Lock()
			running--
			done[i] = true
			mu.Unlock()
		})
		if len(order) != len(deps) {
			t.Fatalf("workers %d: loaded %v, want all %d modules", workers, order, len(deps))
		}
		if most > workers {
			t.Errorf("workers %d: %d loads at once", workers, most)
		}
		// mbcache heads the heaviest chain (ext4), then crc (the
		// nf_tables chain); the light leaves come last among the first ones.
		if order[0] != 6 {
			t.Errorf("workers %d: order %v, want mbcache (6) first", workers, order)
		}
		if i, j := slices.Index(order, 0), slices.Index(order, 8); i > j {
			t.Errorf("workers %d: order %v: a leaf started before the nf_tables chain", workers, order)
		}
	}
	// Nothing to load: returns at once.
	scheduleModules(nil, nil, 2, func(int) { t.Error("load called with no modules") })
}
