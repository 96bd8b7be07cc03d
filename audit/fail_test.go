package audit

import (
	"context"
	"os"
	"os/exec"
	"testing"
)

// TestAppendFailsClosedWhenDiskFull fills a tiny tmpfs: Append must return
// an error (the proxy then refuses the session), every later append must
// fail too, and the log must still verify with every acknowledged record.
func TestAppendFailsClosedWhenDiskFull(t *testing.T) {
	mnt := tinyTmpfs(t)
	key := newKey(t)
	w := openLog(t, mnt, key)
	var acked uint64
	var failErr error
	for i := 0; i < 10000; i++ {
		pos, err := w.Append(context.Background(), Payload{SessionID: "full", Direction: ToAsset, Bytes: 1000, Raw: make([]byte, 1000)})
		if err != nil {
			failErr = err
			break
		}
		acked = pos.Seq
	}
	if failErr == nil {
		t.Fatal("64 KiB filesystem never filled")
	}
	t.Logf("append failed after seq %d: %v", acked, failErr)
	if _, err := w.Append(context.Background(), SessionStart{SessionID: "s", User: "alice", Asset: "plc", Protocol: "modbus", Rule: "r"}); err == nil {
		t.Fatal("append after a failed write succeeded: the failure must be sticky")
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close of a failed log reported no error")
	}
	rep, err := Verify(mnt, Trust{ChainOnly: true})
	if err != nil {
		t.Fatalf("log after disk full: %v", err)
	}
	if rep.LastSeq < acked {
		t.Fatalf("log ends at %d, acknowledged %d", rep.LastSeq, acked)
	}
	// Reopening reads an intact log: the failed write left no partial frame.
	w2, err := Open(mnt, key, WithLogID("test-log"))
	if err != nil {
		t.Fatalf("reopen after disk full: %v", err)
	}
	if w2.Recovered() != nil {
		t.Fatalf("the failed write left a torn tail: %v", w2.Recovered())
	}
	w2.Close()
}

func TestReopenDoesNotAddRedundantCheckpoints(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	w := openLog(t, dir, key)
	writeSession(t, w, "s", 1)
	w.Close()
	before, _ := Verify(dir, trustOf(key))
	w = openLog(t, dir, key)
	w.Close()
	after, err := Verify(dir, trustOf(key))
	if err != nil || after.Records != before.Records {
		t.Fatalf("open+close of a fully signed log added records: %d -> %d (%v)", before.Records, after.Records, err)
	}
	w = openLog(t, dir, key)
	if _, err := w.AppendBuffered(Event{Type: "unlock", User: "alice"}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	// The event, a new log-closed record and the checkpoint sealing it.
	rep, err := Verify(dir, trustOf(key))
	if err != nil || rep.Unsigned != 0 || rep.Records != before.Records+3 {
		t.Fatalf("after reopen+append+close: %+v %v", rep, err)
	}
}

// tinyTmpfs mounts a 64 KiB tmpfs for a disk-full test (root only; the
// test is skipped otherwise) and unmounts it at the end.
func tinyTmpfs(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	return mnt
}
