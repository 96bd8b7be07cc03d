package syslog

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
)

// tcpReceiver is a syslog receiver on a real loopback TCP socket that
// keeps every octet-counted (RFC 6587) message it gets.
type tcpReceiver struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs []string
}

func startReceiver(t *testing.T) *tcpReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &tcpReceiver{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go r.read(c)
		}
	}()
	return r
}

func (r *tcpReceiver) read(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		n, err := br.ReadString(' ')
		if err != nil {
			return
		}
		size, err := strconv.Atoi(strings.TrimSuffix(n, " "))
		if err != nil {
			return
		}
		b := make([]byte, size)
		if _, err := io.ReadFull(br, b); err != nil {
			return
		}
		r.mu.Lock()
		r.msgs = append(r.msgs, string(b))
		r.mu.Unlock()
	}
}

func (r *tcpReceiver) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

var seqParam = regexp.MustCompile(` seq="(\d+)"`)

// seqsOf counts the records received for each seq (gap messages aside).
func seqsOf(msgs []string) map[uint64]int {
	got := map[uint64]int{}
	for _, m := range msgs {
		if strings.Contains(m, ` event="`+EventExportGap+`"`) {
			continue
		}
		if s := seqParam.FindStringSubmatch(m); s != nil {
			n, _ := strconv.ParseUint(s[1], 10, 64)
			got[n]++
		}
	}
	return got
}

// The export across a prune of the file its cursor is in, with the real
// exporter and a real TCP receiver. The exporter stops with its cursor on
// the last record of the newest file; the gate then logs on and its
// retention removes files, the cursor's among them. When the exporter
// starts again it resumes at the first record after its cursor in the
// oldest file left: every record once, no reset of the cursor (the log
// was neither replaced nor rewritten). When the retention also removed
// records the exporter had not sent (a Removable that does not wait for
// the export), the receiver gets one message saying how many were lost
// to retention before export, and which, before the records after them.
func TestExportResumesAfterPrune(t *testing.T) {
	for _, waitsForExport := range []bool{true, false} {
		t.Run(fmt.Sprintf("retention waits for the export %t", waitsForExport), func(t *testing.T) {
			rcv := startReceiver(t)
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
			cfg := Config{Dir: logDir, Cursor: cursor, Addr: rcv.ln.Addr().String(), Hostname: "gate-1", Poll: 20 * time.Millisecond, Batch: 8,
				RetryDelay: 50 * time.Millisecond, MinAge: -1}
			rep.config(&cfg)
			stop := runExporter(t, cfg)
			waitFor(t, "the exporter at the end of the log", func() bool {
				c, ok, err := LoadCursor(cursor)
				return err == nil && ok && c.Seq == first.LastSeq
			})
			stop()

			// The gate logs on in new files; the retention removes every
			// file it may, the one the cursor is in first.
			newest := filepath.Join(logDir, audit.FileName(uint64(first.Files-1)))
			st, err := os.Stat(newest)
			if err != nil {
				t.Fatal(err)
			}
			removable := func(string) (uint64, bool) { return first.LastSeq, true } // what the cursor says
			if !waitsForExport {
				removable = nil
			}
			w, err = audit.Open(logDir, key, audit.WithLogID("siem-log"), audit.WithMaxFileSize(st.Size()), audit.WithCheckpointEvery(5),
				audit.WithRetention(audit.Retention{MaxBytes: 1, Removable: removable}))
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
			lost := now.FirstSeq - first.LastSeq - 1
			if waitsForExport != (lost == 0) {
				t.Fatalf("the log now starts at seq %d, the cursor is at %d: want a gap only when the retention does not wait for the export", now.FirstSeq, first.LastSeq)
			}

			stop = runExporter(t, cfg)
			defer stop()
			waitFor(t, "the exporter at the end of the log again", func() bool {
				c, ok, err := LoadCursor(cursor)
				return err == nil && ok && c.Seq == now.LastSeq
			})
			stop()
			if _, _, resets := rep.get(); len(resets) > 0 {
				t.Errorf("the exporter set its cursor aside: %q", resets)
			}
			msgs := rcv.messages()
			got := seqsOf(msgs)
			for s := uint64(0); s <= now.LastSeq; s++ {
				want := 1
				if s > first.LastSeq && s < now.FirstSeq {
					want = 0 // removed before export
				}
				if got[s] != want {
					t.Errorf("seq %d received %d times, want %d", s, got[s], want)
				}
			}
			var gaps []string
			for _, m := range msgs {
				if strings.Contains(m, ` event="`+EventExportGap+`"`) {
					gaps = append(gaps, m)
				}
			}
			switch {
			case lost == 0 && len(gaps) > 0:
				t.Errorf("gap messages without a gap: %q", gaps)
			case lost > 0 && (len(gaps) != 1 || !strings.Contains(gaps[0], fmt.Sprintf(` first="%d" last="%d" lost="%d"`, first.LastSeq+1, now.FirstSeq-1, lost))):
				t.Errorf("gap messages %q, want one saying %d records (seq %d to %d) were lost", gaps, lost, first.LastSeq+1, now.FirstSeq-1)
			}
			t.Logf("%d messages; gap: %q", len(msgs), gaps)
		})
	}
}
