package syslog

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
)

func TestFormatEscapesAndLabels(t *testing.T) {
	e := audit.Entry{Record: audit.Record{Seq: 42, Time: audit.TimestampOf(time.Date(2026, 11, 22, 14, 3, 4, 120300000, time.UTC)), Kind: audit.KindPayload},
		Body: audit.Payload{SessionID: "7f3a", Direction: audit.ToAsset, Bytes: 2, Raw: []byte{1, 2}}}
	got := Format(e, "log-1", "gate 1", "otgate", map[string]Labels{"7f3a": {User: `al"i]c\e`, Asset: "plc-7"}})
	want := `<109>1 2026-11-22T14:03:04.120300Z gate1 otgate - payload [otgate@32473 log="log-1" seq="42" hash="` + e.Hash.String() +
		`" kind="payload" session="7f3a" user="al\"i\]c\\e" asset="plc-7"] session 7f3a -> 2 bytes 01 02`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if f := string(Frame("abc")); f != "3 abc" {
		t.Fatalf("frame %q", f)
	}
	// A dev-mode record says so in its parameters.
	e.Record.Dev = true
	got = Format(e, "log-1", "gate 1", "otgate", nil)
	if !strings.Contains(got, `kind="payload" dev="true" session="7f3a"`) {
		t.Fatalf("dev-mode record not marked: %s", got)
	}
}

func TestExporterRefusesForeignCursor(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	w, err := audit.Open(dir, key, audit.WithLogID("siem-log"))
	if err != nil {
		t.Fatal(err)
	}
	w.Append(context.Background(), audit.Event{Type: "refusal", User: "bob"})
	w.Close()
	for name, c := range map[string]Cursor{
		"other log":  {LogID: "another", Seq: 0, Hash: make([]byte, 32)},
		"wrong hash": {LogID: "siem-log", Seq: 1, Hash: make([]byte, 32)},
	} {
		cursor := filepath.Join(t.TempDir(), "cursor")
		if err := SaveCursor(cursor, c); err != nil {
			t.Fatal(err)
		}
		// A listener that accepts: the refusal must come from the cursor check.
		r, _ := startRsyslog(t, false)
		var reported []error
		x, err := New(Config{Dir: dir, Cursor: cursor, Addr: r.addr(), Hostname: "gate-1", Poll: 10 * time.Millisecond,
			OnError: func(err error) { reported = append(reported, err) }})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = x.Run(ctx)
		cancel()
		if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "cursor") {
			t.Fatalf("%s: Run = %v, want a permanent cursor error", name, err)
		}
		// The proxy runs the exporter in a goroutine and drops what Run
		// returns: the stop must reach OnError (it went nowhere).
		if len(reported) == 0 || !errors.Is(reported[len(reported)-1], err) || !strings.Contains(reported[len(reported)-1].Error(), "STOPPED") {
			t.Fatalf("%s: OnError got %v, want the permanent error saying the export stopped", name, reported)
		}
		t.Logf("%s: %v", name, err)
	}
}
