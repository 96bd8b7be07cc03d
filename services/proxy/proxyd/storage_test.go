package proxyd

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/audit/syslog"
)

// smallFS mounts a tmpfs of size MiB (a small /perm) for the test.
func smallFS(t *testing.T, mib int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size="+strconv.Itoa(mib)+"m"); err != nil {
		t.Fatalf("mount a %d MiB tmpfs: %v", mib, err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	return mnt
}

// The automatic retention follows the file system's size; an explicit
// budget that leaves less than the reserve free is refused with the
// numbers; with a syslog export only what the receiver acknowledged may go.
func TestPlanAuditStorage(t *testing.T) {
	mnt := smallFS(t, 256)
	dir := filepath.Join(mnt, "audit") // not there yet: planned from its parent
	st, err := planAuditStorage(dir, 0, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.retention.MaxBytes != 128<<20 || st.retention.Reserve != 8<<20 || st.fileSize != 8<<20 || st.retention.Removable != nil {
		t.Fatalf("automatic on 256 MiB: budget %d, reserve %d, files %d", st.retention.MaxBytes, st.retention.Reserve, st.fileSize)
	}
	if !strings.Contains(st.describe, "budget 128 MiB (half of the 256 MiB file system)") || !strings.Contains(st.describe, "no syslog export") {
		t.Fatalf("description %q", st.describe)
	}
	if _, err := planAuditStorage(dir, 250, 0, ""); err == nil || !strings.Contains(err.Error(), "a budget of 250 MiB leaves less than the reserve of 8 MiB free on the 256 MiB file system") {
		t.Fatalf("a budget too large: %v", err)
	}
	st, err = planAuditStorage(dir, 0, 1, "")
	if err != nil || st.retention.Reserve != 1<<20 {
		t.Fatalf("explicit reserve: %+v, %v", st.retention, err)
	}

	cursor := filepath.Join(t.TempDir(), "syslog.cursor")
	st, err = planAuditStorage(dir, 64, 0, cursor)
	if err != nil || st.retention.MaxBytes != 64<<20 || st.fileSize != 4<<20 || !strings.Contains(st.describe, "only once exported") {
		t.Fatalf("with export: %+v, %v", st, err)
	}
	if _, ok := st.retention.Removable("x"); ok {
		t.Fatal("nothing exported yet (no cursor), but records may go")
	}
	if err := syslog.SaveCursor(cursor, syslog.Cursor{LogID: "x", Seq: 1234}); err != nil {
		t.Fatal(err)
	}
	if through, ok := st.retention.Removable("x"); !ok || through != 1234 {
		t.Fatalf("after the receiver acknowledged seq 1234: %d, %v", through, ok)
	}
	if through, ok := st.retention.Removable("another-log"); ok {
		t.Fatalf("another log's cursor lets records go through seq %d", through)
	}
}

// The status note follows the disk: the log filling a small file system
// past the reserve makes it DEGRADED (new sessions refused), and the
// session start is refused with the reason.
func TestWatchStorageNote(t *testing.T) {
	mnt := smallFS(t, 4)
	dir := filepath.Join(mnt, "audit")
	st, err := planAuditStorage(dir, 1, 2, "")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	// Removable says no: nothing can go, as with a syslog receiver that
	// is down.
	st.retention.Removable = func(string) (uint64, bool) { return 0, false }
	w, err := audit.Open(dir, key, audit.WithRetention(st.retention), audit.WithMaxFileSize(256<<10), audit.WithCheckpointEvery(4))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var mu sync.Mutex
	var notes []string
	note := func(s string) error {
		mu.Lock()
		defer mu.Unlock()
		notes = append(notes, s)
		return nil
	}
	lastNote := func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(notes) == 0 {
			return "(none)"
		}
		return notes[len(notes)-1]
	}
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		watchStorage(ctx, w, 20*time.Millisecond, t.Logf, note)
	}()
	// The watcher stops before the file system goes (cleanup).
	defer func() { cancel(); <-watched }()

	bg := context.Background()
	if _, err := w.Append(bg, audit.SessionStart{SessionID: "a", User: "alice", Asset: "plc-7", Protocol: "modbus", Rule: "r"}); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 32<<10)
	for {
		free := freeMiB(t, mnt)
		if free < 2 {
			break
		}
		if _, err := w.Append(bg, audit.Payload{SessionID: "a", Direction: audit.ToAsset, Bytes: uint64(len(big)), Raw: big}); err != nil {
			t.Fatal(err)
		}
	}
	// The disk can be seen full before the retention has looked at the
	// files the filling rotated (it runs on the writer's own goroutine,
	// after each rotation): the note names why nothing can go once it has.
	want := []string{"audit log storage FULL", "new sessions refused", "is not exported yet"}
	full := func(note string) bool {
		for _, part := range want {
			if !strings.Contains(note, part) {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(20 * time.Second)
	for !full(lastNote()) {
		if time.Now().After(deadline) {
			t.Fatalf("note %q, want one that says %q", lastNote(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err = w.Append(bg, audit.SessionStart{SessionID: "b", User: "bob", Asset: "plc-7", Protocol: "modbus", Rule: "r"})
	if err == nil || !strings.Contains(err.Error(), "audit log storage full") {
		t.Fatalf("a session start on a full disk: %v", err)
	}
}

func freeMiB(t *testing.T, dir string) int64 {
	t.Helper()
	var s unix.Statfs_t
	if err := unix.Statfs(dir, &s); err != nil {
		t.Fatal(err)
	}
	return int64(s.Bavail) * int64(s.Bsize) >> 20
}

// The syslog cursor lets records go only when it is the cursor of this
// log: one left from another log (a log directory replaced or started
// anew, the exporter not yet run to reset it) says nothing about what of
// this log was exported, however far it got.
func TestRetentionIgnoresAnotherLogsCursor(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	cursor := filepath.Join(t.TempDir(), "syslog.cursor")
	if err := syslog.SaveCursor(cursor, syslog.Cursor{LogID: "a-log-before-this-one", Seq: 1 << 40, Hash: make([]byte, 32)}); err != nil {
		t.Fatal(err)
	}
	st, err := planAuditStorage(dir, 64, 0, cursor)
	if err != nil {
		t.Fatal(err)
	}
	st.retention.MaxBytes = 8 << 10
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	w, err := audit.Open(dir, key, audit.WithRetention(st.retention), audit.WithMaxFileSize(2<<10), audit.WithCheckpointEvery(4))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	bg := context.Background()
	for i := 0; i < 40; i++ {
		if _, err := w.Append(bg, audit.Event{Type: "test", Reason: strings.Repeat("x", 200)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Checkpoint(bg); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, _ := w.StorageState()
		if strings.Contains(s.Held, "not exported yet") {
			break
		}
		if _, err := os.Stat(filepath.Join(dir, audit.FileName(0))); err != nil {
			t.Fatalf("file 0 removed on the word of another log's cursor: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("storage state %+v: want held, not exported", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A file system that reports no size (a tmpfs mounted without a limit:
// statfs says 0 blocks, 0 free) gets no automatic budget and no reserve,
// instead of a proxy that refuses to start (or, with a budget given,
// refuses every session: 0 bytes "free" is below any reserve); an explicit
// budget is kept, an explicit reserve refused. Flags that overflow in
// bytes are refused, not wrapped to a negative budget (no bound).
func TestPlanAuditStorageNoSize(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=0"); err != nil {
		t.Fatalf("mount an unlimited tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	dir := filepath.Join(mnt, "audit")
	st, err := planAuditStorage(dir, 0, 0, "")
	if err != nil {
		t.Fatalf("automatic on a file system without a size: %v", err)
	}
	if st.retention.MaxBytes != 0 || st.retention.Reserve != 0 || st.fileSize != 64<<20 || !strings.Contains(st.describe, "reports no size") {
		t.Fatalf("automatic without a size: %+v, file %d, %q", st.retention, st.fileSize, st.describe)
	}
	st, err = planAuditStorage(dir, 32, 0, "")
	if err != nil || st.retention.MaxBytes != 32<<20 || st.retention.Reserve != 0 || st.fileSize != 2<<20 {
		t.Fatalf("explicit budget without a size: %+v, file %d, %v", st.retention, st.fileSize, err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	w, err := audit.Open(dir, key, audit.WithRetention(st.retention))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Append(context.Background(), audit.SessionStart{SessionID: "a", User: "alice", Asset: "plc-7", Protocol: "modbus", Rule: "r"}); err != nil {
		t.Fatalf("a session on a file system without a size: %v", err)
	}
	if _, err := planAuditStorage(dir, 0, 16, ""); err == nil || !strings.Contains(err.Error(), "reports no size or free space") {
		t.Fatalf("an explicit reserve without a size: %v", err)
	}

	small := smallFS(t, 64)
	for _, f := range [][2]int64{{1 << 44, 0}, {0, 1 << 44}, {1<<63 - 1, 0}} {
		if st, err := planAuditStorage(small, f[0], f[1], ""); err == nil {
			t.Fatalf("-audit-max-mib %d -audit-reserve-mib %d: %+v", f[0], f[1], st.retention)
		}
	}
}
