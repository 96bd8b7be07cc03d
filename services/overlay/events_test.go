package overlay

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestQuarantineEndIsLogged: the end of a quarantine (the address may go
// to another asset from then on) is an event in the log like the release
// that began it. It used to pass silently.
func TestQuarantineEndIsLogged(t *testing.T) {
	h := newNetNS(t)
	kind := linkKind(t, h)
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "overlay.sock")
	policyDir := filepath.Join(dir, "policy")
	var (
		mu   sync.Mutex
		logs []string
	)
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	r := startWith(t, h, kind, dir, func(s *Service) {
		s.Now = func() time.Time { return time.Unix(0, clock.Load()).UTC() }
		s.Logf = func(format string, args ...any) {
			mu.Lock()
			logs = append(logs, fmt.Sprintf(format, args...))
			mu.Unlock()
			t.Logf(format, args...)
		}
	})
	logged := func(what string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range logs {
			if strings.Contains(l, what) {
				return true
			}
		}
		return false
	}

	storePolicy(t, policyDir, asset("plc-1", "cell-1", "10.10.1.10", "")+asset("plc-2", "cell-1", "10.10.1.11", ""))
	waitSnapshot(t, sock, "two assets", func(s *Snapshot) bool { return len(s.Entries) == 2 })
	storePolicy(t, policyDir, asset("plc-1", "cell-1", "10.10.1.10", ""))
	waitSnapshot(t, sock, "plc-2 released", func(s *Snapshot) bool { return len(s.Quarantined) == 1 })
	if !logged("plc-2 released 100.64.0.3, quarantined until 2026-12-01T01:00:00Z") {
		t.Errorf("no release event in %q", logs)
	}

	clock.Add(int64(2 * time.Hour)) // past the site's 1h quarantine
	r.reload <- struct{}{}
	waitSnapshot(t, sock, "quarantine ended", func(s *Snapshot) bool { return len(s.Quarantined) == 0 })
	if !logged("quarantine of 100.64.0.3 (released by plc-2) ended; the address is free again") {
		t.Errorf("the end of the quarantine was not logged: %q", logs)
	}
}
