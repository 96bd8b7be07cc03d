package syslog

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
)

// The export-gap message with a real rsyslogd as the receiver: the
// exporter sends the log up to its end and stops; the gate logs on and
// its retention (one that does not wait for the export) removes every
// file it may, records never sent among them. When the exporter starts
// again, rsyslog gets one message it parses as RFC 5424 (its msgid and
// structured data are what its template writes, which a message rsyslog
// took for anything else would not have) saying which records were lost
// and how many, and then every record after the gap, once each, in
// order. It guards the gap report of TestExportResumesAfterPrune at a
// real SIEM receiver.
func TestExportGapToRsyslog(t *testing.T) {
	r, _ := startRsyslog(t, false)
	logDir := t.TempDir()
	cursor := filepath.Join(t.TempDir(), "cursor")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	w, err := audit.Open(logDir, key, audit.WithLogID("siem-log"), audit.WithMaxFileSize(4096), audit.WithCheckpointEvery(5))
	if err != nil {
		t.Fatal(err)
	}
	appendSessions(t, w, []string{"a1", "a2", "a3", "a4", "a5", "a6"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	first, err := audit.Verify(logDir, audit.Trust{PublicKey: &key.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	var rep reports
	cfg := Config{Dir: logDir, Cursor: cursor, Addr: r.addr(), Hostname: "gate-1", Poll: 20 * time.Millisecond, Batch: 8,
		RetryDelay: 50 * time.Millisecond, MinAge: -1}
	rep.config(&cfg)
	stop := runExporter(t, cfg)
	waitFor(t, "the exporter at the end of the log", func() bool {
		c, ok, err := LoadCursor(cursor)
		return err == nil && ok && c.Seq == first.LastSeq
	})
	stop()

	// The gate logs on; its retention removes the cursor's file and the
	// records after it that were never exported.
	newest := filepath.Join(logDir, audit.FileName(uint64(first.Files-1)))
	st, err := os.Stat(newest)
	if err != nil {
		t.Fatal(err)
	}
	w, err = audit.Open(logDir, key, audit.WithLogID("siem-log"), audit.WithMaxFileSize(st.Size()), audit.WithCheckpointEvery(5),
		audit.WithRetention(audit.Retention{MaxBytes: 1}))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 6; i++ {
		appendSessions(t, w, []string{fmt.Sprintf("b%d", i)})
	}
	waitFor(t, "the retention to remove the cursor's file", func() bool {
		w.Checkpoint(context.Background()) // the retention also runs at checkpoint ticks; hurry it
		_, err := os.Stat(newest)
		return os.IsNotExist(err)
	})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	now, err := audit.Verify(logDir, audit.Trust{PublicKey: &key.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	if now.FirstSeq <= first.LastSeq+1 {
		t.Fatalf("the log now starts at seq %d, the cursor is at %d: the retention removed no record before export", now.FirstSeq, first.LastSeq)
	}
	lost := now.FirstSeq - first.LastSeq - 1

	stop = runExporter(t, cfg)
	defer stop()
	waitFor(t, "the exporter at the end of the log again", func() bool {
		c, ok, err := LoadCursor(cursor)
		return err == nil && ok && c.Seq == now.LastSeq
	})
	stop()
	// The exporter's cursor is saved once the receiver has the records;
	// rsyslog writes them to its file a little later.
	var got []received
	waitFor(t, fmt.Sprintf("rsyslog to write seq %d", now.LastSeq), func() bool {
		got = r.lines(t)
		return len(got) > 0 && got[len(got)-1].params["seq"] == strconv.FormatUint(now.LastSeq, 10)
	})
	if _, _, resets := rep.get(); len(resets) > 0 {
		t.Errorf("the exporter set its cursor aside: %q", resets)
	}

	// What rsyslog wrote, in order: the records up to the cursor, the gap
	// message, the records from the oldest left to the end, each once.
	var want []string
	for s := uint64(0); s <= first.LastSeq; s++ {
		want = append(want, strconv.FormatUint(s, 10))
	}
	want = append(want, "gap")
	for s := now.FirstSeq; s <= now.LastSeq; s++ {
		want = append(want, strconv.FormatUint(s, 10))
	}
	var order []string
	gaps := 0
	for _, g := range got {
		if g.params["event"] != EventExportGap {
			order = append(order, g.params["seq"])
			continue
		}
		order = append(order, "gap")
		gaps++
		wantParams := map[string]string{"log": "siem-log", "event": EventExportGap,
			"first": strconv.FormatUint(first.LastSeq+1, 10), "last": strconv.FormatUint(now.FirstSeq-1, 10), "lost": strconv.FormatUint(lost, 10)}
		if g.msgid != "gap" || g.app != "otgate" || g.host != "gate-1" || fmt.Sprint(g.params) != fmt.Sprint(wantParams) {
			t.Errorf("rsyslog parsed the gap message as msgid %q app %q host %q structured data %v, want msgid \"gap\" app \"otgate\" host \"gate-1\" %v",
				g.msgid, g.app, g.host, g.params, wantParams)
		}
		if at, err := time.Parse(time.RFC3339Nano, g.time); err != nil || time.Since(at).Abs() > time.Hour {
			t.Errorf("rsyslog parsed the gap message's time as %q (%v)", g.time, err)
		}
		wantMsg := fmt.Sprintf("%d records of log siem-log (seq %d to %d) were removed by the log's retention before they were exported: the receiver does not get them",
			lost, first.LastSeq+1, now.FirstSeq-1)
		if g.msg != wantMsg {
			t.Errorf("gap message text %q, want %q", g.msg, wantMsg)
		}
	}
	if gaps != 1 || fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("rsyslog wrote, in order:\n%v\nwant:\n%v", order, want)
	}
	t.Logf("rsyslog wrote %d lines; %d records (seq %d to %d) lost to retention before export", len(got), lost, first.LastSeq+1, now.FirstSeq-1)
}
