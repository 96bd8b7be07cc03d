package syslog

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/otgate/otgate/audit"
)

// TestExportLabelsSurviveExporterRestart stops the exporter in the middle
// of a session, after the session start went out and its cursor moved past
// it: the payload records exported by the next exporter still carry the
// session's user and asset (they went out without them: the labels were
// only in memory). The cursor holds the open sessions only: an ended
// session leaves it, and so do the sessions of a run that crashed (the
// log-recovered event of the next Open), each of which the receiver is
// told will never end (event session-cut).
func TestExportLabelsSurviveExporterRestart(t *testing.T) {
	r, _ := startRsyslog(t, false)
	ctx := context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	// A run that crashed with session "ghost" open: its log is copied
	// without Close, and the copy is opened again (log-recovered).
	crashed := t.TempDir()
	w0, err := audit.Open(crashed, key, audit.WithLogID("siem-log"), audit.WithMaxFileSize(4096))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w0.Append(ctx, audit.SessionStart{SessionID: "ghost", User: "mallory", Asset: "plc-9", Protocol: "modbus", Rule: "r", Source: "10.0.0.6:5000"}); err != nil {
		t.Fatal(err)
	}
	if _, err := w0.Append(ctx, audit.Payload{SessionID: "ghost", Direction: audit.ToAsset, Bytes: 1, Raw: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()
	files, _ := filepath.Glob(filepath.Join(crashed, "audit-*.log"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		mustWrite(t, filepath.Join(logDir, filepath.Base(f)), b)
	}
	w0.Close()
	w, err := audit.Open(logDir, key, audit.WithLogID("siem-log"), audit.WithMaxFileSize(4096))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.Recovery() == "" {
		t.Fatal("the copied log was not recovered: the test does not test the crash")
	}

	payloads := func(n int) uint64 {
		var last audit.Position
		for i := 0; i < n; i++ {
			p, err := w.AppendBuffered(audit.Payload{SessionID: "long", Direction: audit.ToClient, Bytes: 2, Raw: []byte{0, byte(i)}})
			if err != nil {
				t.Fatal(err)
			}
			last = p
		}
		if err := w.Sync(); err != nil {
			t.Fatal(err)
		}
		return last.Seq
	}
	if _, err := w.Append(ctx, audit.SessionStart{SessionID: "long", User: "alice", Asset: "plc-7", Protocol: "modbus", Rule: "r", Source: "10.0.0.5:5000"}); err != nil {
		t.Fatal(err)
	}
	lastBefore := payloads(3)

	cursor := filepath.Join(t.TempDir(), "cursor")
	cfg := Config{Dir: logDir, Cursor: cursor, Addr: r.addr(), Hostname: "gate-1", Poll: 20 * time.Millisecond, Batch: 4, MinAge: -1}
	stop := runExporter(t, cfg)
	// The cursor is past the session start and the payloads: a restart
	// resends none of them, so the start is not read again.
	var c Cursor
	waitFor(t, "the cursor to pass the first payloads", func() bool {
		var ok bool
		c, ok, err = LoadCursor(cursor)
		return err == nil && ok && c.Seq >= lastBefore
	})
	stop()
	if got := c.Sessions; len(got) != 1 || got["long"] != (Labels{User: "alice", Asset: "plc-7"}) {
		t.Fatalf("cursor sessions %+v, want only the open session long (alice on plc-7; ghost's run ended in a crash)", got)
	}

	lastAfter := payloads(3)
	if _, err := w.Append(ctx, audit.SessionEnd{SessionID: "long", Reason: "client closed"}); err != nil {
		t.Fatal(err)
	}
	stop = runExporter(t, cfg)
	waitFor(t, "the payloads after the restart", func() bool {
		for _, l := range r.lines(t) {
			if l.params["seq"] == strconv.FormatUint(lastAfter, 10) {
				return true
			}
		}
		return false
	})
	waitFor(t, "the cursor to pass the session end", func() bool {
		c, _, err = LoadCursor(cursor)
		return err == nil && c.Seq > lastAfter
	})
	stop()
	n := 0
	for _, l := range r.lines(t) {
		if l.params["session"] != "long" || l.params["kind"] != "payload" {
			continue
		}
		n++
		if l.params["user"] != "alice" || l.params["asset"] != "plc-7" {
			t.Errorf("payload seq %s of session long went out with user %q asset %q, want alice on plc-7", l.params["seq"], l.params["user"], l.params["asset"])
		}
	}
	if n != 6 {
		t.Fatalf("%d payload lines of session long, want 6", n)
	}
	// ghost never ended: right after the recovery record the receiver is
	// told so (event session-cut, with its user and asset), once.
	lines := r.lines(t)
	cut := -1
	for i, l := range lines {
		if l.params["event"] != EventSessionCut {
			continue
		}
		if cut >= 0 || l.params["session"] != "ghost" || l.params["user"] != "mallory" || l.params["asset"] != "plc-9" || l.msgid != "cut" ||
			i == 0 || lines[i-1].params["event"] != audit.EventLogRecovered || l.params["recovery"] != lines[i-1].params["seq"] {
			t.Fatalf("session-cut message %d: %+v (the one before: %+v); want one, for ghost (mallory on plc-9), right after the log-recovered record it names", i, l, lines[max(i-1, 0)])
		}
		cut = i
	}
	if cut < 0 {
		t.Fatal("no session-cut message for ghost, open when its run crashed")
	}
	if len(c.Sessions) != 0 {
		t.Fatalf("cursor after the session end still holds %+v", c.Sessions)
	}
}

// TestLoadCursorOldFormat reads a cursor written before it held sessions.
func TestLoadCursorOldFormat(t *testing.T) {
	old := struct {
		LogID string `cbor:"1,keyasint"`
		Seq   uint64 `cbor:"2,keyasint"`
		Hash  []byte `cbor:"3,keyasint"`
	}{"siem-log", 41, make([]byte, 32)}
	b, err := cbor.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cursor")
	mustWrite(t, path, b)
	c, ok, err := LoadCursor(path)
	if err != nil || !ok || c.LogID != "siem-log" || c.Seq != 41 || len(c.Sessions) != 0 {
		t.Fatalf("old cursor: %+v %v %v", c, ok, err)
	}
	// Written back without open sessions it keeps the old bytes, so an
	// older exporter still reads it.
	if err := SaveCursor(path, c); err != nil {
		t.Fatal(err)
	}
	b2, _ := os.ReadFile(path)
	em, _ := cbor.CoreDetEncOptions().EncMode()
	want, _ := em.Marshal(old)
	if string(b2) != string(want) {
		t.Fatalf("cursor without sessions: %x, want the old format %x", b2, want)
	}
}
