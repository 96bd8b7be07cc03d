package audit

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

func TestFormatBody(t *testing.T) {
	at := TimestampOf(time.Date(2026, 11, 22, 14, 3, 4, 0, time.UTC))
	modbus := Payload{SessionID: "7f3a", Direction: ToClient, Bytes: 25,
		Decoded: &Decoded{Protocol: "modbus", Unit: 1, Function: 3, FunctionName: "read-holding-registers", Table: "holding",
			Start: 100, Count: 3, Values: []int64{1, 2, 65535}, Outcome: "ok", Latency: int64(1200 * time.Microsecond)}}
	cases := []struct {
		name string
		body Body
		opts ShowOptions
		want string
	}{
		{"start next day", SessionStart{SessionID: "7f3a", User: "alice", Asset: "plc-7", Protocol: "modbus", Rule: "night",
			ValidUntil: TimestampOf(time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC))}, ShowOptions{},
			`session 7f3a start alice -> plc-7 (modbus) rule "night" until 2026-11-23T06:00Z`},
		{"start by Modbus/TCP Security", SessionStart{SessionID: "7f3b", User: "alice", Asset: "plc-7", Protocol: "modbus", Rule: "day",
			Source: "192.0.2.1", CertSerial: "0a1b", Endpoint: "100.64.0.7:802"}, ShowOptions{},
			`session 7f3b start alice -> plc-7 (modbus) rule "day" from 192.0.2.1 cert 0a1b via Modbus/TCP Security at 100.64.0.7:802`},
		{"raw truncated", Payload{SessionID: "7f3a", Direction: ToAsset, Bytes: 300, Raw: make([]byte, 40)}, ShowOptions{HexPreview: 4},
			`session 7f3a -> 300 bytes 00 00 00 00 ...`},
		{"decoded default", modbus, ShowOptions{},
			`session 7f3a <- modbus unit 1 fc 3 read-holding-registers holding 100+3 = [1 2 65535] ok 1.2ms`},
		{"decoded by the inspector's formatter", modbus, ShowOptions{Formatters: map[string]PayloadFormatter{
			"modbus": func(p Payload, _ *SessionStart) (string, bool) { return "<- FC3 ok", true }}},
			`session 7f3a <- FC3 ok`},
		{"event", Event{Type: "lockout", User: "mallory", Source: "10.0.0.9", Reason: "5 failed logins"}, ShowOptions{},
			`event lockout user mallory from 10.0.0.9: 5 failed logins`},
	}
	for _, tc := range cases {
		if got := FormatBody(at, tc.body, tc.opts); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

func TestShowMarksTornTail(t *testing.T) {
	dir := t.TempDir()
	w := openLog(t, dir, newKey(t))
	writeSession(t, w, "s", 1)
	w.Close()
	p := fileOf(t, dir, 0)
	b := mustRead(t, p)
	mustWrite(t, p, b[:len(b)-1])
	var out strings.Builder
	if err := Show(&out, dir, ShowOptions{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "torn tail") || !strings.Contains(out.String(), "session s start alice") {
		t.Fatalf("transcript:\n%s", out.String())
	}
}

// Show with a session id that no record carries (a typo, another gate's
// log) is an error naming the id and the directory, not an empty
// transcript; a session whose end the log lacks says so, and names the
// torn tail where its records may have been lost.
func TestShowSessionUnknownOrUnended(t *testing.T) {
	dir := t.TempDir()
	w := openLog(t, dir, newKey(t))
	writeSession(t, w, "s", 1)
	if _, err := w.Append(context.Background(), SessionStart{SessionID: "live", User: "bob", Asset: "plc-7", Protocol: "tcp", Rule: "r"}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var out strings.Builder
	err := Show(&out, dir, ShowOptions{Session: "5"})
	if err == nil || !strings.Contains(err.Error(), `no record of session "5" in `+dir) {
		t.Fatalf("unknown session: %v, want an error naming it and %s; printed:\n%s", err, dir, out.String())
	}
	out.Reset()
	if err := Show(&out, dir, ShowOptions{Session: "s"}); err != nil || strings.Contains(out.String(), "no end record") {
		t.Fatalf("ended session: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := Show(&out, dir, ShowOptions{Session: "live"}); err != nil || !strings.Contains(out.String(), "session live has no end record") {
		t.Fatalf("session without an end: %v\n%s", err, out.String())
	}
	// A torn tail: named for a session without an end, and in the error
	// for one without any record.
	p := fileOf(t, dir, 0)
	b := mustRead(t, p)
	mustWrite(t, p, b[:len(b)-1])
	out.Reset()
	if err := Show(&out, dir, ShowOptions{Session: "live"}); err != nil || !strings.Contains(out.String(), "torn tail") {
		t.Fatalf("session without an end, torn log: %v\n%s", err, out.String())
	}
	if err := Show(io.Discard, dir, ShowOptions{Session: "5"}); err == nil || !strings.Contains(err.Error(), "torn tail") {
		t.Fatalf("unknown session, torn log: %v", err)
	}
}

// At the record of an unclean shutdown (a power cut: the log reopened
// unsealed), the transcript names the sessions that were open then and
// never got an end record, in the order they started, and only those;
// one such session's own transcript says the gate stopped without
// recording its end instead of calling it possibly live.
func TestShowSessionsOpenAtAnUncleanShutdown(t *testing.T) {
	src := t.TempDir()
	key := newKey(t)
	w := openLog(t, src, key)
	writeSession(t, w, "done", 1)
	for _, st := range []SessionStart{{SessionID: "cut1", User: "bob", Asset: "plc-7", Protocol: "modbus", Rule: "r"},
		{SessionID: "cut2", User: "carol", Asset: "hmi-1", Protocol: "tcp", Rule: "r"}} {
		if _, err := w.Append(context.Background(), st); err != nil {
			t.Fatal(err)
		}
	}
	dir := copyDir(t, src) // as a power cut leaves it: no log-closed record
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w = openLog(t, dir, key)
	if w.Recovery() == "" {
		t.Fatal("the copy of a live log reopened without a recovery")
	}
	writeSession(t, w, "after", 1)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	var out strings.Builder
	if err := Show(&out, dir, ShowOptions{}); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	rec := strings.Index(text, "event log-recovered: recovered after unclean shutdown")
	cut1 := strings.Index(text, "-- open at this unclean shutdown, no end recorded: session cut1 (bob -> plc-7/modbus, started ")
	cut2 := strings.Index(text, "-- open at this unclean shutdown, no end recorded: session cut2 (carol -> hmi-1/tcp, started ")
	after := strings.Index(text, "session after start")
	if rec < 0 || cut1 < rec || cut2 < cut1 || after < cut2 {
		t.Fatalf("want the recovery, then cut1 and cut2 named, then the next session; transcript:\n%s", text)
	}
	if n := strings.Count(text, "-- open at this unclean shutdown"); n != 2 {
		t.Fatalf("%d sessions named open at the shutdown, want 2 (cut1, cut2); transcript:\n%s", n, text)
	}

	out.Reset()
	if err := Show(&out, dir, ShowOptions{Session: "cut1"}); err != nil ||
		!strings.Contains(out.String(), "-- session cut1 has no end record: the gate stopped without recording it (unclean shutdown recorded at ") {
		t.Fatalf("transcript of cut1: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := Show(&out, dir, ShowOptions{Session: "after"}); err != nil || strings.Contains(out.String(), "no end record") {
		t.Fatalf("transcript of a session after the recovery: %v\n%s", err, out.String())
	}
}
