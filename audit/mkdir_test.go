package audit

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

// Open of a log whose directory (and parents) it creates fsyncs the parent
// of each: the first records' fsyncs made the files durable inside a
// directory whose own entry a power cut could still take away (Open used a
// bare os.MkdirAll).
func TestOpenCreatesItsDirectoryDurably(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "perm", "audit")
	var mu sync.Mutex
	var synced []string
	dirSynced = func(d string) {
		mu.Lock()
		defer mu.Unlock()
		synced = append(synced, filepath.Clean(d))
	}
	defer func() { dirSynced = nil }()
	w := openLog(t, dir, newKey(t))
	if _, err := w.Append(context.Background(), Event{Type: "refusal", User: "bob"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, want := range []string{root, filepath.Join(root, "perm"), dir} {
		if !slices.Contains(synced, want) {
			t.Errorf("directory %s not fsynced (fsynced: %v)", want, synced)
		}
	}
}
