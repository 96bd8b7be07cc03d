package audit

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// logBytes is the size of dir's log files together.
func logBytes(t *testing.T, dir string) (int64, int) {
	t.Helper()
	files, sizes, err := fileSizes(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, s := range sizes {
		n += s
	}
	return n, len(files)
}

// Over its budget the log removes its oldest files, each after a durable
// log-pruned record naming it; the log that remains verifies without
// AllowPartial (the gate's own signed record explains the gap) and sealed.
func TestRetentionPrunesOldestFiles(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	const budget = 24 << 10
	w := openLog(t, dir, key, WithMaxFileSize(4<<10), WithCheckpointEvery(5), WithRetention(Retention{MaxBytes: budget}))
	for i := 0; i < 40; i++ {
		writeSession(t, w, fmt.Sprintf("s%d", i), 2)
	}
	// The newest file may hold records no checkpoint signs yet: one more
	// checkpoint and the retention catches up.
	if _, err := w.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the log within its budget", func() bool {
		n, _ := logBytes(t, dir)
		return n <= budget+4<<10
	})
	st, err := w.StorageState()
	if err != nil || st.Held != "" || st.MaxBytes != budget || st.Files < 3 || st.Free <= 0 {
		t.Fatalf("storage state %+v, %v", st, err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fileOf(t, dir, 0)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file 0 still there: %v", err)
	}
	pruned := eventsOf(t, dir, EventLogPruned)
	if len(pruned) == 0 || pruned[0].Pruned == nil || !strings.Contains(pruned[len(pruned)-1].Reason, "over its budget of 24576 bytes") {
		t.Fatalf("log-pruned records %+v", pruned)
	}
	tr := trustOf(key)
	tr.RequireSealed = true
	rep, err := Verify(dir, tr)
	if err != nil {
		t.Fatalf("a log the gate pruned fails verify: %v", err)
	}
	files, _, _ := fileSizes(dir)
	if rep.PrunedFiles != files[0].index || rep.FirstSeq == 0 || rep.PrunedRecordSeq == 0 {
		t.Fatalf("report: pruned %d files (first present %s), first seq %d, record at %d", rep.PrunedFiles, files[0].name, rep.FirstSeq, rep.PrunedRecordSeq)
	}

	// A file that goes missing otherwise is still an error: remove the
	// oldest file left, which no log-pruned record names.
	if err := os.Remove(filepath.Join(dir, files[0].name)); err != nil {
		t.Fatal(err)
	}
	_, err = Verify(dir, trustOf(key))
	p := wantProblem(t, err, ErrFiles, files[1].name, -1)
	if !strings.Contains(p.Error(), "no log-pruned record of this log names them") {
		t.Fatalf("unexplained gap: %v", p)
	}
}

// Records not yet exported (Removable) or not yet signed are never
// removed: the log grows past its budget and StorageState says why; once
// the export moves on, the files go.
func TestRetentionKeepsUnexportedAndUnsigned(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	var exported atomic.Int64
	exported.Store(-1)
	removable := func(string) (uint64, bool) {
		v := exported.Load()
		return uint64(v), v >= 0
	}
	w := openLog(t, dir, key, WithMaxFileSize(4<<10), WithCheckpointEvery(5),
		WithRetention(Retention{MaxBytes: 12 << 10, Removable: removable}))
	defer w.Close()
	for i := 0; i < 30; i++ {
		writeSession(t, w, fmt.Sprintf("s%d", i), 2)
	}
	w.kickPrune()
	waitFor(t, "the retention to say it is held", func() bool {
		st, _ := w.StorageState()
		return strings.Contains(st.Held, "is not exported yet (exported: none)")
	})
	if _, err := os.Stat(fileOf(t, dir, 0)); err != nil {
		t.Fatalf("an unexported file was removed: %v", err)
	}
	n, _ := logBytes(t, dir)
	if n <= 12<<10 {
		t.Fatalf("the log (%d bytes) should be over its budget", n)
	}
	exported.Store(3) // file 0 holds more than that
	w.kickPrune()
	waitFor(t, "the held reason to move", func() bool {
		st, _ := w.StorageState()
		return strings.Contains(st.Held, "(exported: through seq 3)")
	})
	exported.Store(1 << 40)
	w.kickPrune()
	waitFor(t, "the log within its budget", func() bool {
		st, _ := w.StorageState()
		return st.Held == "" && st.Bytes <= 16<<10
	})

	// Unsigned records stay too: a signer that fails (a TPM that stopped
	// answering) leaves every record unsigned.
	dir2 := t.TempDir()
	w2 := openLog(t, dir2, failingSigner{key}, WithMaxFileSize(4<<10), WithRetention(Retention{MaxBytes: 8 << 10}))
	defer w2.Close()
	for i := 0; i < 20; i++ {
		writeSession(t, w2, fmt.Sprintf("s%d", i), 2)
	}
	w2.kickPrune()
	waitFor(t, "unsigned records held", func() bool {
		st, _ := w2.StorageState()
		return strings.Contains(st.Held, "holds records no checkpoint signs yet")
	})
	if _, err := os.Stat(fileOf(t, dir2, 0)); err != nil {
		t.Fatalf("an unsigned file was removed: %v", err)
	}
}

// A stop between the log-pruned record and the removal: the file is
// still there at the next open, the retention removes it then (a second
// record), and the log verifies.
func TestRetentionStopBeforeRemoval(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	w := openLog(t, dir, key, WithMaxFileSize(4<<10), WithCheckpointEvery(5))
	for i := 0; i < 12; i++ {
		writeSession(t, w, fmt.Sprintf("s%d", i), 2)
	}
	w.Close()
	_, sizes, _ := fileSizes(dir)
	total, _ := logBytes(t, dir)
	if len(sizes) < 3 {
		t.Fatalf("%d files, want at least 3", len(sizes))
	}
	file0 := mustRead(t, fileOf(t, dir, 0))
	// A budget that file 0 alone is over: it goes, the rest stays.
	budget := total - sizes[0] + 1500
	opts := []Option{WithMaxFileSize(4 << 10), WithCheckpointEvery(5), WithRetention(Retention{MaxBytes: budget})}
	w = openLog(t, dir, key, opts...)
	waitFor(t, "file 0 removed", func() bool {
		_, err := os.Stat(fileOf(t, dir, 0))
		return err != nil
	})
	w.Close()
	if _, err := os.Stat(fileOf(t, dir, 1)); err != nil {
		t.Fatalf("file 1 went too: %v", err)
	}
	// File 0 back as it was (a log file never changes once the next is
	// started): the state a stop after the record and before the
	// removal leaves.
	mustWrite(t, fileOf(t, dir, 0), file0)
	if _, err := Verify(dir, trustOf(key)); err != nil {
		t.Fatalf("with file 0 still there: %v", err)
	}
	w = openLog(t, dir, key, opts...)
	waitFor(t, "file 0 removed again", func() bool {
		_, err := os.Stat(fileOf(t, dir, 0))
		return err != nil
	})
	w.Close()
	if n := len(eventsOf(t, dir, EventLogPruned)); n != 2 {
		t.Fatalf("%d log-pruned records, want 2 (one per attempt)", n)
	}
	rep, err := Verify(dir, trustOf(key))
	if err != nil || rep.PrunedFiles != 1 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
}

// On a small file system that fills up, a new session is refused once the
// free space is below the reserve, with the reason; records of running
// sessions still go in.
func TestRetentionReserveRefusesSessions(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=2m"); err != nil {
		t.Fatalf("mount a 2 MiB tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	dir := filepath.Join(mnt, "audit")
	key := newKey(t)
	w := openLog(t, dir, key, WithRetention(Retention{Reserve: 1 << 20}))
	defer w.Close()
	ctx := context.Background()
	if _, err := w.Append(ctx, SessionStart{SessionID: "a", User: "alice", Asset: "plc-7", Protocol: "modbus", Rule: "r"}); err != nil {
		t.Fatalf("a session on an empty file system: %v", err)
	}
	big := make([]byte, 64<<10)
	for i := 0; ; i++ {
		free, err := freeBytes(dir)
		if err != nil {
			t.Fatal(err)
		}
		if free < 1<<20 {
			break
		}
		if _, err := w.Append(ctx, Payload{SessionID: "a", Direction: ToAsset, Bytes: uint64(len(big)), Raw: big}); err != nil {
			t.Fatalf("payload %d with %d bytes free: %v", i, free, err)
		}
	}
	_, err := w.Append(ctx, SessionStart{SessionID: "b", User: "bob", Asset: "plc-7", Protocol: "modbus", Rule: "r"})
	if !errors.Is(err, ErrStorageFull) || !strings.Contains(err.Error(), "below the reserve of 1 MiB") {
		t.Fatalf("a new session with the file system below the reserve: %v, want ErrStorageFull", err)
	}
	if _, err := w.Append(ctx, Payload{SessionID: "a", Direction: ToClient, Bytes: 10, Raw: make([]byte, 10)}); err != nil {
		t.Fatalf("the running session's record: %v", err)
	}
	if _, err := w.Append(ctx, SessionEnd{SessionID: "a", Reason: "client closed"}); err != nil {
		t.Fatalf("the running session's end: %v", err)
	}
}

// failingSigner refuses to sign.
type failingSigner struct{ k *ecdsa.PrivateKey }

func (s failingSigner) Public() crypto.PublicKey { return &s.k.PublicKey }
func (s failingSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("TPM not answering")
}

// switchSigner signs until told to fail (a TPM that stops answering).
type switchSigner struct {
	k    *ecdsa.PrivateKey
	fail *atomic.Bool
}

func (s switchSigner) Public() crypto.PublicKey { return &s.k.PublicKey }
func (s switchSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	if s.fail.Load() {
		return nil, errors.New("TPM not answering")
	}
	return s.k.Sign(r, d, o)
}

// A file goes only once the log-pruned record naming it is signed: with
// the signer down after the file's own records were signed, the file
// stays (held, and said why), so that the disk as it is at any moment (a
// power cut, a copy taken for an audit) verifies without AllowPartial;
// once the signer answers again the file goes and the log still verifies.
func TestRetentionSignsPrunedRecordBeforeRemoval(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	var fail atomic.Bool
	var allow atomic.Bool
	removable := func(string) (uint64, bool) { return 1 << 40, allow.Load() }
	w := openLog(t, dir, switchSigner{key, &fail}, WithMaxFileSize(4<<10), WithCheckpointEvery(5),
		WithRetention(Retention{MaxBytes: 8 << 10, Removable: removable}))
	defer w.Close()
	for i := 0; i < 12; i++ {
		writeSession(t, w, fmt.Sprintf("s%d", i), 2)
	}
	if _, err := w.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	allow.Store(true)
	w.kickPrune()
	waitFor(t, "a log-pruned record", func() bool { return len(eventsOf(t, dir, EventLogPruned)) > 0 })
	waitFor(t, "the retention to say it is held", func() bool {
		st, _ := w.StorageState()
		return strings.Contains(st.Held, "is not signed yet")
	})
	if _, err := os.Stat(fileOf(t, dir, 0)); err != nil {
		t.Fatalf("file 0 removed before its log-pruned record was signed: %v", err)
	}
	if _, err := Verify(dir, trustOf(key)); err != nil {
		t.Fatalf("the log as the disk holds it with the signer down: %v", err)
	}
	n := len(eventsOf(t, dir, EventLogPruned))
	w.kickPrune()
	w.kickPrune()
	time.Sleep(50 * time.Millisecond)
	if m := len(eventsOf(t, dir, EventLogPruned)); m != n {
		t.Fatalf("retrying appended %d more log-pruned records for the same file", m-n)
	}

	fail.Store(false)
	w.kickPrune()
	waitFor(t, "file 0 removed", func() bool {
		_, err := os.Stat(fileOf(t, dir, 0))
		return err != nil
	})
	rep, err := Verify(dir, trustOf(key))
	if err != nil || rep.PrunedFiles == 0 {
		t.Fatalf("after the removal: %+v, %v", rep, err)
	}
}

// StorageState while the retention removes files (the proxy asks every
// 30 s, from another goroutine): a file removed between the listing and
// its stat is gone, not an error (which the proxy shows as DEGRADED).
func TestStorageStateWhilePruning(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	w := openLog(t, dir, key, WithMaxFileSize(1<<10), WithCheckpointEvery(1), WithRetention(Retention{MaxBytes: 4 << 10}))
	defer w.Close()
	done := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := w.StorageState(); err != nil {
				errc <- err
				return
			}
		}
	}()
	for i := 0; i < 300; i++ {
		writeSession(t, w, fmt.Sprintf("s%d", i), 1)
	}
	close(done)
	if err := <-errc; err != nil {
		t.Fatalf("storage state while pruning: %v", err)
	}
	// The writer prunes in the background after the last append: read
	// the directory once it is closed, or a file listed may be gone when
	// it is opened.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// The log-pruned records of the first files went with later ones:
	// the newest names the newest file removed, and the files go oldest
	// first.
	pruned := eventsOf(t, dir, EventLogPruned)
	if len(pruned) == 0 || pruned[len(pruned)-1].Pruned == nil {
		t.Fatalf("log-pruned records %+v", pruned)
	}
	last := pruned[len(pruned)-1].Pruned.File
	if last < 19 {
		t.Fatalf("only %d files pruned", last+1)
	}
	if _, err := os.Stat(fileOf(t, dir, last)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file %d named pruned is still there: %v", last, err)
	}
}
