package syslog

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
)

// reports collects what an exporter says through its callbacks.
type reports struct {
	mu                    sync.Mutex
	errors, notes, resets []string
}

func (r *reports) config(cfg *Config) {
	cfg.OnError = func(err error) { r.mu.Lock(); r.errors = append(r.errors, err.Error()); r.mu.Unlock() }
	cfg.OnStatus = func(note string) { r.mu.Lock(); r.notes = append(r.notes, note); r.mu.Unlock() }
	cfg.OnReset = func(what string) { r.mu.Lock(); r.resets = append(r.resets, what); r.mu.Unlock() }
}

func (r *reports) get() (errors, notes, resets []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errors...), append([]string(nil), r.notes...), append([]string(nil), r.resets...)
}

// entries reads every record of a log that verifies.
func entries(t *testing.T, dir string) []audit.Entry {
	t.Helper()
	rd, err := audit.NewReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var out []audit.Entry
	for {
		e, err := rd.Next()
		if err != nil {
			return out
		}
		out = append(out, e)
	}
}

// seqCounts counts the lines rsyslog got for each seq.
func seqCounts(t *testing.T, r *rsyslog) map[uint64]int {
	t.Helper()
	n := map[uint64]int{}
	for _, l := range r.lines(t) {
		seq, err := strconv.ParseUint(l.params["seq"], 10, 64)
		if err != nil {
			t.Fatalf("line without a seq: %+v", l)
		}
		n[seq]++
	}
	return n
}

// TestExportResumesAfterDamagedLogRepaired damages a record in the middle
// of an older file of the log before it is exported: the exporter sends
// and acknowledges everything before it, reports the damage (file and
// offset) through OnError again at every retry and is held up (OnStatus);
// once the byte is put back, the export goes on by itself from there:
// every record reaches rsyslog exactly once (it stopped for good, until a
// restart of the proxy).
func TestExportResumesAfterDamagedLogRepaired(t *testing.T) {
	r, _ := startRsyslog(t, false)
	logDir := t.TempDir()
	// 20 sessions, ~125 records of ~90 bytes in 4 KiB files: at least
	// three files whatever the number of time-based checkpoints (12
	// sessions made only two in a quick run, and no older file to damage).
	var sessions []string
	for i := 1; i <= 20; i++ {
		sessions = append(sessions, "d"+strconv.Itoa(i))
	}
	w := writeLog(t, logDir, sessions)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	all := entries(t, logDir)
	var bad audit.Entry
	var inFile []audit.Entry
	for _, e := range all {
		if e.File == audit.FileName(1) {
			inFile = append(inFile, e)
		}
	}
	if len(inFile) < 5 || all[len(all)-1].File == audit.FileName(1) {
		t.Fatalf("want a second file of at least 5 records that is not the newest, the log has %d records, %d in %s", len(all), len(inFile), audit.FileName(1))
	}
	bad = inFile[len(inFile)/2]
	path := filepath.Join(logDir, bad.File)
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	at := bad.Offset + 8 + bad.Size/2 - 4 // inside the payload: the CRC fails
	content[at] ^= 0x40
	mustWrite(t, path, content)
	content[at] ^= 0x40

	var rep reports
	cfg := Config{Dir: logDir, Cursor: filepath.Join(t.TempDir(), "cursor"), Addr: r.addr(), Hostname: "gate-1",
		Poll: 20 * time.Millisecond, Batch: 7, MinAge: -1, StuckRetry: 100 * time.Millisecond, StuckRetryMax: 300 * time.Millisecond}
	rep.config(&cfg)
	stop := runExporter(t, cfg)
	defer stop()
	where := fmt.Sprintf("%s offset %d", bad.File, bad.Offset)
	waitFor(t, "three reports of the damage", func() bool {
		errs, _, _ := rep.get()
		n := 0
		for _, e := range errs {
			if strings.Contains(e, "STUCK") && strings.Contains(e, where) {
				n++
			}
		}
		return n >= 3
	})
	// Everything before the damage went out and was acknowledged.
	waitFor(t, "the records before the damage", func() bool { return len(seqCounts(t, r)) == int(bad.Record.Seq) })
	for seq := range seqCounts(t, r) {
		if seq >= bad.Record.Seq {
			t.Fatalf("seq %d exported, at or after the damaged seq %d", seq, bad.Record.Seq)
		}
	}
	if c, _, err := LoadCursor(cfg.Cursor); err != nil || c.Seq != bad.Record.Seq-1 {
		t.Fatalf("cursor %+v (%v), want the record before the damage, seq %d", c, err, bad.Record.Seq-1)
	}
	_, notes, _ := rep.get()
	if len(notes) == 0 || !strings.Contains(notes[len(notes)-1], "held up since") || !strings.Contains(notes[len(notes)-1], where) {
		t.Fatalf("status notes %q, want the export held up at %s", notes, where)
	}

	// The log is repaired (a copy put back): the export resumes.
	mustWrite(t, path, content)
	waitFor(t, "every record", func() bool { return len(seqCounts(t, r)) == len(all) })
	waitFor(t, "the held-up note to clear", func() bool {
		_, notes, _ := rep.get()
		return notes[len(notes)-1] == ""
	})
	stop()
	for seq, n := range seqCounts(t, r) {
		if n != 1 {
			t.Errorf("seq %d received %d times", seq, n)
		}
	}
	checkReceived(t, r, logDir)
	errs, _, resets := rep.get()
	t.Logf("%d reports, e.g. %s", len(errs), errs[0])
	if len(resets) != 0 {
		t.Fatalf("cursor reset on a damaged log: %q", resets)
	}
}

// TestExporterSetsForeignCursorAside gives the exporter cursors that do
// not belong to the log: it sets each aside (kept as a stale file), says
// so through OnReset and exports the whole log from its oldest record
// (the export stopped for good, or waited silently for a seq beyond the
// end of the log).
func TestExporterSetsForeignCursorAside(t *testing.T) {
	logDir := t.TempDir()
	w := writeLog(t, logDir, []string{"f1", "f2"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	all := entries(t, logDir)
	encode := func(c Cursor) []byte {
		path := filepath.Join(t.TempDir(), "c")
		if err := SaveCursor(path, c); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(path)
		return b
	}
	zero := make([]byte, 32)
	for _, tc := range []struct {
		name, why string
		cursor    []byte
	}{
		{"other log", `is for log "another"`, encode(Cursor{LogID: "another", Seq: 3, Hash: zero})},
		{"other record at its seq", "is at seq 3 with hash", encode(Cursor{LogID: "siem-log", Seq: 3, Hash: zero})},
		{"beyond the end of the log", "is at seq 100000, but the log in " + logDir + " ends before it", encode(Cursor{LogID: "siem-log", Seq: 100000, Hash: zero})},
		{"undecodable", "cannot be used", []byte("not a cursor")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := startRsyslog(t, false)
			cursor := filepath.Join(t.TempDir(), "cursor")
			mustWrite(t, cursor, tc.cursor)
			var rep reports
			cfg := Config{Dir: logDir, Cursor: cursor, Addr: r.addr(), Hostname: "gate-1", Poll: 10 * time.Millisecond, MinAge: -1}
			rep.config(&cfg)
			stop := runExporter(t, cfg)
			defer stop()
			checkReceived(t, r, logDir)
			waitFor(t, "the new cursor", func() bool {
				c, ok, err := LoadCursor(cursor)
				return err == nil && ok && c.LogID == "siem-log" && c.Seq == all[len(all)-1].Record.Seq
			})
			stop()
			_, _, resets := rep.get()
			if len(resets) != 1 || !strings.Contains(resets[0], cursor+" "+tc.why) || !strings.Contains(resets[0], "starts again from the oldest record") {
				t.Fatalf("OnReset got %q, want one report that the cursor %s", resets, tc.why)
			}
			stale, _ := filepath.Glob(cursor + ".stale-*")
			if len(stale) != 1 {
				t.Fatalf("stale cursors %q, want one", stale)
			}
			if b, _ := os.ReadFile(stale[0]); string(b) != string(tc.cursor) || !strings.Contains(resets[0], stale[0]) {
				t.Fatalf("the cursor was not kept as it was in %s (named in the report: %s)", stale[0], resets[0])
			}
			for seq, n := range seqCounts(t, r) {
				if n != 1 {
					t.Errorf("seq %d received %d times", seq, n)
				}
			}
			t.Log(resets[0])
		})
	}
}
