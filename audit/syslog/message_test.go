package syslog

import (
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
