package overlay

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/site"
)

// TestBadSettingsChangeNothing: a bad link kind, link name or interval
// (flags of otgate-overlay) stops Run at once with an error naming it,
// before any state is written, socket served or interface made. They
// used to surface only in the first sync (after the allocation was
// persisted): the service then reported ready and failed every sync for
// good, or (a negative interval) stopped after its first sync.
func TestBadSettingsChangeNothing(t *testing.T) {
	h := newNetNS(t)
	cases := []struct {
		name string
		tune func(*Service)
		want string
	}{
		{"link kind", func(s *Service) { s.LinkKind = "bridge" }, `unknown link kind "bridge"`},
		{"link name", func(s *Service) { s.Link = "a-very-long-nm" }, `interface name "a-very-long-nm"`},
		{"poll", func(s *Service) { s.Poll = -time.Second }, "poll interval -1s"},
		{"repair", func(s *Service) { s.Repair = -time.Second }, "repair interval -1s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			storePolicy(t, filepath.Join(dir, "policy"), asset("plc-1", "cell-1", "10.10.1.10", ""))
			svc := &Service{
				PolicyPath: filepath.Join(dir, "policy", site.AppliedFile),
				StatePath:  filepath.Join(dir, "overlay", "alloc.cbor"),
				SocketPath: filepath.Join(dir, "run", "overlay.sock"),
				Handle:     h,
				Poll:       20 * time.Millisecond,
				Logf:       t.Logf,
			}
			tc.tune(svc)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- svc.Run(ctx, nil) }()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				cancel()
				err = <-done
				t.Errorf("Run still running 10 s after start with a bad %s (stopped: %v)", tc.name, err)
			}
			cancel()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one saying %q", err, tc.want)
			}
			for _, p := range []string{svc.StatePath, svc.SocketPath} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was made despite the bad %s", p, tc.name)
				}
			}
			if links, _ := h.LinkList(); len(links) > 1 {
				t.Errorf("interfaces made despite the bad %s: %d links", tc.name, len(links))
			}
		})
	}
}
