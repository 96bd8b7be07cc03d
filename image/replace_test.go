package image

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Builds of the same board that finish together each install a whole
// image; none fails because another one installed first, and the board
// directory holds exactly one build's files.
func TestConcurrentInstallsOfOneBoard(t *testing.T) {
	for round := 0; round < 100; round++ {
		out := t.TempDir()
		final := filepath.Join(out, "board")
		const n = 4
		var wg sync.WaitGroup
		errs := make([]error, n)
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			tmp, err := os.MkdirTemp(out, "board.tmp-")
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{KernelFile, InitramfsFile, ManifestFile} {
				if err := os.WriteFile(filepath.Join(tmp, f), []byte(fmt.Sprint(i)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = replaceDir(tmp, final)
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: install %d: %v", round, i, err)
			}
		}
		ents, _ := os.ReadDir(out)
		if len(ents) != 1 {
			t.Fatalf("round %d: out holds %d entries, want the board only", round, len(ents))
		}
		var first string
		for _, f := range []string{KernelFile, InitramfsFile, ManifestFile} {
			b, err := os.ReadFile(filepath.Join(final, f))
			if err != nil {
				t.Fatal(err)
			}
			if first == "" {
				first = string(b)
			} else if string(b) != first {
				t.Fatalf("round %d: %s is from build %s, the rest from build %s", round, f, b, first)
			}
		}
	}
}
