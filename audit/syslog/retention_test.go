package syslog

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
)

// The audit log's retention and the export to a real rsyslog, as the
// proxy wires them: while the receiver is down nothing can be removed, so
// the log grows past its budget and says why; once the receiver is back
// and has acknowledged the records, the oldest files go. Every record the
// log ever held reached rsyslog, including those of the files removed,
// and the log that remains verifies without --allow-partial.
func TestRetentionWaitsForTheReceiver(t *testing.T) {
	r, _ := startRsyslog(t, false)
	// The receiver is down from the start: its port refuses connections.
	r.cmd.Process.Kill()
	r.cmd.Wait()
	downAddr := r.addr()

	logDir := t.TempDir()
	cursor := filepath.Join(t.TempDir(), "cursor")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	exported := func(logID string) (uint64, bool) {
		c, ok, err := LoadCursor(cursor)
		if err != nil || !ok || c.LogID != logID {
			return 0, false
		}
		return c.Seq, true
	}
	const budget = 16 << 10
	w, err := audit.Open(logDir, key, audit.WithLogID("siem-log"), audit.WithMaxFileSize(4096), audit.WithCheckpointEvery(5),
		audit.WithRetention(audit.Retention{MaxBytes: budget, Removable: exported}))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	cfg := Config{Dir: logDir, Cursor: cursor, Addr: downAddr, Hostname: "gate-1", Poll: 20 * time.Millisecond, Batch: 8,
		RetryDelay: 50 * time.Millisecond, MinAge: -1}
	stop := runExporter(t, cfg)
	var ids []string
	for i := 0; i < 24; i++ {
		ids = append(ids, fmt.Sprintf("s%d", i))
	}
	appendSessions(t, w, ids)
	if _, err := w.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the retention held by the export", func() bool {
		st, err := w.StorageState()
		return err == nil && strings.Contains(st.Held, "is not exported yet (exported: none)") && st.Bytes > budget
	})
	if _, err := os.Stat(filepath.Join(logDir, audit.FileName(0))); err != nil {
		t.Fatalf("a file was removed before it was exported: %v", err)
	}
	whole, err := audit.Verify(logDir, audit.Trust{PublicKey: &key.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	stop()

	// The receiver comes back (on a new port: point the exporter at it).
	os.Remove(filepath.Join(r.dir, "port"))
	r.cmd = exec.Command(r.cmd.Path, r.cmd.Args[1:]...)
	r.cmd.Stdout, r.cmd.Stderr = os.Stderr, os.Stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "rsyslogd to listen again", func() bool {
		b, err := os.ReadFile(filepath.Join(r.dir, "port"))
		r.port = strings.TrimSpace(string(b))
		return err == nil && r.port != "" && r.port != "0"
	})
	cfg.Addr = r.addr()
	stop = runExporter(t, cfg)
	defer stop()
	waitFor(t, "the log back within its budget once exported", func() bool {
		w.Checkpoint(context.Background()) // the retention also runs at checkpoint ticks; hurry it
		st, err := w.StorageState()
		return err == nil && st.Held == "" && st.Bytes <= budget+4096
	})
	if _, err := os.Stat(filepath.Join(logDir, audit.FileName(0))); err == nil {
		t.Fatal("file 0 is still there")
	}
	// Everything the log held before any removal reached the receiver.
	waitFor(t, "every record of the whole log at the receiver", func() bool {
		got := seqCounts(t, r)
		for s := whole.FirstSeq; s <= whole.LastSeq; s++ {
			if got[s] == 0 {
				return false
			}
		}
		return true
	})
	rep, err := audit.Verify(logDir, audit.Trust{PublicKey: &key.PublicKey})
	if err != nil {
		t.Fatalf("the pruned log: %v", err)
	}
	if rep.PrunedFiles == 0 || rep.FirstSeq == 0 {
		t.Fatalf("report %+v: want a log that starts after pruned files", rep)
	}
}
