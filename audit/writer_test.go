package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

func TestRoundTripAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	w := openLog(t, dir, key, WithMaxFileSize(2048))
	for i := 0; i < 10; i++ {
		writeSession(t, w, fmt.Sprintf("s%02d", i), 5)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(dir, trustOf(key))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if rep.Files < 3 {
		t.Fatalf("want rotation into several files with max size 2048, got %d files", rep.Files)
	}
	if rep.Unsigned != 0 || !rep.Signed || rep.SignedThrough+1 != rep.LastSeq {
		t.Fatalf("after Close every record must be signed: %+v", rep)
	}
	es := entries(t, dir)
	if uint64(len(es)) != rep.Records || rep.FirstSeq != 0 || rep.LastSeq != uint64(len(es)-1) {
		t.Fatalf("report %+v does not match %d records", rep, len(es))
	}
	starts, ends := 0, 0
	for i, e := range es {
		if e.Record.Seq != uint64(i) {
			t.Fatalf("record %d has seq %d", i, e.Record.Seq)
		}
		switch b := e.Body.(type) {
		case SessionStart:
			starts++
			if b.User != "alice" || b.Rule != "eng-day" {
				t.Fatalf("session start decoded as %+v", b)
			}
		case SessionEnd:
			ends++
		}
	}
	if starts != 10 || ends != 10 {
		t.Fatalf("got %d starts and %d ends, want 10 each", starts, ends)
	}
	// Reopen continues the same chain.
	w = openLog(t, dir, key, WithMaxFileSize(2048))
	writeSession(t, w, "again", 1)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(dir, trustOf(key)); err != nil {
		t.Fatalf("Verify after reopen: %v", err)
	}
}

// TestCheckpointEveryNAndAtSessionEnd: the count trigger and the
// session-end trigger each sign promptly on their own. The interval
// trigger is an hour away, and the session written after a forced
// checkpoint has too few records for the count trigger, so only the
// session end can sign it within the deadline.
func TestCheckpointEveryNAndAtSessionEnd(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	w := openLog(t, dir, key, WithCheckpointEvery(10), WithCheckpointInterval(time.Hour))
	defer w.Close()
	// Each round's 10 records trigger one checkpoint; waiting for it
	// before the next round keeps a slow signature from covering both.
	for round := 1; round <= 2; round++ {
		for i := 0; i < 10; i++ {
			if _, err := w.Append(context.Background(), Event{Type: "login-failure", User: "mallory", Reason: fmt.Sprint("bad code ", i)}); err != nil {
				t.Fatal(err)
			}
		}
		waitWithin(t, 5*time.Second, fmt.Sprint("count-triggered checkpoint ", round), func() bool {
			rep, err := Verify(dir, trustOf(key))
			return err == nil && rep.Checkpoints >= round
		})
	}
	if _, err := w.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(dir, trustOf(key))
	if err != nil || rep.Unsigned != 0 {
		t.Fatalf("after a forced checkpoint: %+v %v", rep, err)
	}
	writeSession(t, w, "s1", 1) // 4 records, fewer than CheckpointEvery
	waitWithin(t, 5*time.Second, "a checkpoint after the session end", func() bool {
		rep, err := Verify(dir, trustOf(key))
		return err == nil && rep.Unsigned == 0
	})
}

func TestCheckpointInterval(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	w, err := Open(dir, key, WithLogID("test-log"), WithCheckpointInterval(50*time.Millisecond), WithFlushInterval(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.AppendBuffered(Event{Type: "refusal", User: "bob", Reason: "no grant"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a timed checkpoint covering the buffered record", func() bool {
		rep, err := Verify(dir, trustOf(key))
		return err == nil && rep.Unsigned == 0 && rep.Checkpoints >= 1
	})
}

func TestGroupCommitConcurrentAppenders(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	w := openLog(t, dir, key, WithMaxFileSize(16<<10))
	var wg sync.WaitGroup
	seen := make([]map[uint64]bool, 16)
	for g := 0; g < 16; g++ {
		seen[g] = map[uint64]bool{}
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				pos, err := w.Append(context.Background(), Event{Type: "refusal", User: fmt.Sprint("u", g), Reason: fmt.Sprint(i)})
				if err != nil {
					t.Error(err)
					return
				}
				seen[g][pos.Seq] = true
			}
		}(g)
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(dir, trustOf(key)); err != nil {
		t.Fatal(err)
	}
	bySeq := map[uint64]Event{}
	for _, e := range entries(t, dir) {
		if ev, ok := e.Body.(Event); ok && ev.Type != EventLogClosed {
			bySeq[e.Record.Seq] = ev
		}
	}
	for g, m := range seen {
		for seq := range m {
			if ev, ok := bySeq[seq]; !ok || ev.User != fmt.Sprint("u", g) {
				t.Fatalf("acknowledged seq %d of writer %d not in the log as its record (%+v)", seq, g, ev)
			}
		}
	}
	if len(bySeq) != 16*50 {
		t.Fatalf("%d events in the log, want %d", len(bySeq), 16*50)
	}
}

func TestAppendRejectsBadBodies(t *testing.T) {
	w := openLog(t, t.TempDir(), newKey(t))
	defer w.Close()
	for _, b := range []Body{
		SessionStart{SessionID: "s", User: "alice", Asset: "plc", Protocol: "modbus"}, // no rule
		Payload{SessionID: "s", Direction: 3, Bytes: 1},
		Payload{SessionID: "s", Direction: ToAsset, Bytes: 1, Raw: []byte{1, 2}},
		Event{},
		SessionEnd{SessionID: "s"},
		Rotation{LogID: "x", PrevHead: make([]byte, 32)},
		Checkpoint{Head: make([]byte, 32), KeyID: "k", Signature: []byte{1}},
	} {
		if _, err := w.Append(context.Background(), b); !errors.Is(err, ErrInvalidBody) {
			t.Errorf("Append(%#v) = %v, want ErrInvalidBody", b, err)
		}
	}
}

func TestOpenRefusesWrongLogIDAndCorruptionUnchanged(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	w := openLog(t, dir, key)
	writeSession(t, w, "s1", 3)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, key, WithLogID("other")); !errors.Is(err, ErrLogID) {
		t.Fatalf("Open with another log id = %v, want ErrLogID", err)
	}
	es := entries(t, dir)
	path := fileOf(t, dir, 0)
	b := mustRead(t, path)
	b[es[2].Offset+frameHeaderSize+3] ^= 0x40 // inside record 2, not the last one
	mustWrite(t, path, b)
	_, err := Open(dir, key, WithLogID("test-log"))
	wantProblem(t, err, ErrCRC, FileName(0), -1)
	if after := mustRead(t, path); string(after) != string(b) {
		t.Fatal("Open changed a corrupt file")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("Open left files behind in a corrupt log: %v", ents)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, 30*time.Second, what, cond)
}

func waitWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
