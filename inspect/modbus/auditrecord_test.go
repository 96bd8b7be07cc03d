package modbus

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/audit/syslog"
)

// TestAuditPayloadRoundTrip writes records of every kind through a real
// audit log and checks that the transcript line rendered from what was
// read back (RecordOf) is the line of the original record.
func TestAuditPayloadRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 22, 14, 3, 4, 120e6, time.UTC)
	later := at.Add(1200 * time.Microsecond)
	rec := func(req, resp string, tid uint16, v Verdict, deny ExceptionCode, reason string) Record {
		var q Request
		if err := q.Parse(adu(tid, 1, pdu(t, req))); err != nil {
			t.Fatalf("parse %s: %v", req, err)
		}
		var r Record
		r.fillRequest(&q, at)
		r.Verdict, r.DenyException, r.Reason = v, deny, reason
		switch {
		case v == VerdictDenied:
			r.ResponseTime, r.Outcome, r.Exception = later, OutcomeException, deny
		case resp == "":
			r.Outcome = OutcomeNoResponse
		default:
			var p Response
			if err := p.Parse(adu(tid, 1, pdu(t, resp))); err != nil {
				t.Fatalf("parse %s: %v", resp, err)
			}
			r.fillResponse(&p, later)
		}
		return r
	}
	recs := []Record{
		rec("06 0034 0037", "06 0034 0037", 1, VerdictAllowed, 0, ""),
		rec("03 0000 0003", "03 06 000a 0014 001e", 2, VerdictAllowed, 0, ""),
		rec("01 0000 000a", "01 02 0502", 3, VerdictAllowed, 0, ""),
		rec("05 0003 ff00", "05 0003 ff00", 4, VerdictAllowed, 0, ""),
		rec("0f 0000 000a 02 0502", "0f 0000 000a", 5, VerdictAllowed, 0, ""),
		rec("10 0032 0002 04 0001 0002", "10 0032 0002", 6, VerdictAllowed, 0, ""),
		rec("04 0000 0001", "84 02", 7, VerdictAllowed, 0, ""),
		rec("06 003c 0001", "", 8, VerdictDenied, ExIllegalDataAddress, `modbus rules "g": write holding 60 outside write ranges 50-55`),
		rec("06 003c 0001", "06 003c 0001", 9, VerdictWouldDeny, ExIllegalDataAddress, "r"),
		rec("17 0000 0001 0032 0001 02 0007", "17 02 0009", 10, VerdictAllowed, 0, ""),
		rec("16 0004 00f2 0025", "16 0004 00f2 0025", 11, VerdictAllowed, 0, ""),
		rec("08 0000 1234", "08 0000 1234", 12, VerdictAllowed, 0, ""),
		rec("2b 0e 01 00", "2b 0e 01 01 00 00 00", 13, VerdictAllowed, 0, ""),
		rec("18 0010", "18 0004 0001 0063", 14, VerdictAllowed, 0, ""),
		rec("03 0000 0001", "", 15, VerdictAllowed, 0, ""),
		rec("14 0e 06 0004 0001 0002 06 0003 0009 0002", "14 0c 05 06 0df8 0020 05 06 0001 0002", 20, VerdictAllowed, 0, ""),
		{ResponseTime: later, TransactionID: 16, Unit: 1, Function: FuncReadCoils, Outcome: OutcomeUnsolicited, Exception: ExIllegalFunction},
		{RequestTime: at, ResponseTime: later, TransactionID: 17, Unit: 1, Function: FuncReadHoldingRegisters,
			Table: TableHoldingRegisters, Count: 2, Verdict: VerdictAllowed, Outcome: OutcomeMalformed, Reason: "byte count 3 for 2 registers"},
	}

	fwd := rec("06 0034 0037", "", 18, VerdictAllowed, 0, "")
	fwd.Outcome = OutcomeForwarded
	fwdWould := rec("06 003c 0001", "", 19, VerdictWouldDeny, ExIllegalDataAddress, "r")
	fwdWould.Outcome = OutcomeForwarded
	recs = append(recs, fwd, fwdWould)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	w, err := audit.Open(dir, key)
	if err != nil {
		t.Fatal(err)
	}
	var dec audit.Decoded // reused across records, as the proxy's sink does
	for i := range recs {
		if _, err := w.Append(context.Background(), AuditPayload("s1", &recs[i], &dec)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := audit.NewReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	i := 0
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p, ok := e.Body.(audit.Payload)
		if !ok {
			continue
		}
		want := string(recs[i].AppendText(nil, "alice", "plc-7"))
		back, err := RecordOf(p)
		if err != nil {
			t.Fatalf("record %d (%s): %v", i, want, err)
		}
		if got := string(back.AppendText(nil, "alice", "plc-7")); got != want {
			t.Errorf("record %d read back:\n got %s\nwant %s", i, got, want)
		}
		if fresh := AuditPayload("s1", &recs[i], nil).Decoded; !reflect.DeepEqual(p.Decoded, fresh) {
			t.Errorf("record %d read back (written with a reused Decoded):\n got %+v\nwant %+v", i, *p.Decoded, *fresh)
		}
		i++
	}
	if i != len(recs) {
		t.Fatalf("read back %d payload records, wrote %d", i, len(recs))
	}
	// Spot checks: the lines are the transcript's, not empty renderings.
	for _, want := range []string{"write holding 52 = 55 -> ok (1.2 ms)", "read coil 0..9 -> ok = 1 0 1 0 0 0 0 0 0 1",
		"-> denied, exception 02 illegal data address: modbus rules", "[would deny, exception 02", "-> no response",
		"unsolicited response, exception 01", "malformed response: byte count 3",
		"write holding 52 = 55 -> forwarded", "write holding 60 = 1 -> forwarded [would deny, exception 02"} {
		found := false
		for i := range recs {
			found = found || strings.Contains(recs[i].String(), want)
		}
		if !found {
			t.Errorf("no record renders %q", want)
		}
	}
}

func TestRecordOfRejects(t *testing.T) {
	ok := func() audit.Payload {
		r := Record{RequestTime: time.Unix(1, 0), ResponseTime: time.Unix(2, 0), Unit: 1, Function: FuncReadHoldingRegisters,
			Table: TableHoldingRegisters, Count: 1, ReadValues: []byte{0, 7}, Verdict: VerdictAllowed}
		return AuditPayload("s1", &r, nil)
	}
	if _, err := RecordOf(ok()); err != nil {
		t.Fatalf("a good payload: %v", err)
	}
	cases := []struct {
		name  string
		spoil func(p *audit.Payload)
		want  string
	}{
		{"not decoded", func(p *audit.Payload) { p.Decoded = nil }, "not decoded"},
		{"other protocol", func(p *audit.Payload) { p.Decoded.Protocol = "dnp3" }, `protocol "dnp3"`},
		{"old text record", func(p *audit.Payload) { p.Decoded.Result = "" }, "no result field"},
		{"unit", func(p *audit.Payload) { p.Decoded.Unit = 256 }, "unit 256 out of range"},
		{"start", func(p *audit.Payload) { p.Decoded.Start = 70000 }, "start 70000 out of range"},
		{"table", func(p *audit.Payload) { p.Decoded.Table = "registers" }, `unknown table "registers"`},
		{"result", func(p *audit.Payload) { p.Decoded.Result = "fine" }, `unknown result "fine"`},
		{"verdict", func(p *audit.Payload) { p.Decoded.Verdict = "none" }, `unknown verdict "none"`},
	}
	for _, c := range cases {
		p := ok()
		c.spoil(&p)
		if _, err := RecordOf(p); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "session s1") {
			t.Errorf("%s: err %v, want one naming the session and %q", c.name, err, c.want)
		}
	}
}

// TestPairKey: the record made before forwarding a write and the record
// that completes it (response or none) pair; a different request time,
// transaction or value does not; reads and denied writes pair with
// nothing.
func TestPairKey(t *testing.T) {
	at := time.Date(2026, 11, 22, 14, 3, 4, 120e6, time.UTC)
	write := func(tid uint16, at time.Time, v byte, outcome Outcome, verdict Verdict) audit.Payload {
		r := Record{RequestTime: at, TransactionID: tid, Unit: 1, Function: FuncWriteSingleRegister, Table: TableHoldingRegisters,
			Address: 52, Count: 1, Written: []byte{0, v}, Verdict: verdict, Outcome: outcome}
		if outcome != OutcomeForwarded && outcome != OutcomeNoResponse {
			r.ResponseTime = at.Add(time.Millisecond)
		}
		return AuditPayload("s1", &r, nil)
	}
	key, fwd, ok := PairKey(write(9, at, 55, OutcomeForwarded, VerdictAllowed))
	if !ok || !fwd {
		t.Fatalf("forwarded write: ok %v forwarded %v", ok, fwd)
	}
	for _, c := range []struct {
		name string
		p    audit.Payload
		same bool
	}{
		{"its response", write(9, at, 55, OutcomeOK, VerdictAllowed), true},
		{"its exception", write(9, at, 55, OutcomeException, VerdictAllowed), true},
		{"no response", write(9, at, 55, OutcomeNoResponse, VerdictAllowed), true},
		{"another time", write(9, at.Add(time.Nanosecond), 55, OutcomeOK, VerdictAllowed), false},
		{"another transaction", write(10, at, 55, OutcomeOK, VerdictAllowed), false},
		{"another value", write(9, at, 56, OutcomeOK, VerdictAllowed), false},
	} {
		k, f, ok := PairKey(c.p)
		if !ok || f || (k == key) != c.same {
			t.Errorf("%s: key %q ok %v forwarded %v, want same key %v", c.name, k, ok, f, c.same)
		}
	}
	if _, _, ok := PairKey(write(9, at, 55, OutcomeException, VerdictDenied)); ok {
		t.Error("a denied write pairs")
	}
	read := Record{RequestTime: at, ResponseTime: at.Add(time.Millisecond), TransactionID: 9, Unit: 1, Function: FuncReadHoldingRegisters,
		Table: TableHoldingRegisters, Count: 1, ReadValues: []byte{0, 7}, Verdict: VerdictAllowed}
	if _, _, ok := PairKey(AuditPayload("s1", &read, nil)); ok {
		t.Error("a read pairs")
	}
}

// TestAuditPayloadKeepsRawWrites: a write file record, a state-changing
// diagnostics sub-function and a vendor code keep the data they sent in
// the payload's Written, and read back from it unchanged.
func TestAuditPayloadKeepsRawWrites(t *testing.T) {
	at := time.Date(2026, 11, 22, 14, 3, 4, 0, time.UTC)
	for _, h := range []string{"15 0d 06 0004 0007 0003 06af 04be 100d", "08 0004 0000", "5a 00 24 01"} {
		var req Request
		if err := req.Parse(adu(9, 1, pdu(t, h))); err != nil {
			t.Fatalf("parse %s: %v", h, err)
		}
		var r Record
		r.fillRequest(&req, at)
		r.Verdict, r.Outcome = VerdictAllowed, OutcomeForwarded
		want := pdu(t, h)[1:]
		switch req.Function {
		case FuncWriteFileRecord:
			want = want[1:] // after the byte count
		case FuncDiagnostics:
			want = want[2:] // after the sub-function
		}
		p := AuditPayload("s1", &r, nil)
		if !bytes.Equal(p.Decoded.Written, want) {
			t.Errorf("%s: payload Written % x, want % x", h, p.Decoded.Written, want)
		}
		back, err := RecordOf(p)
		if err != nil || !bytes.Equal(back.Written, want) || back.String() != r.String() {
			t.Errorf("%s: read back %q (%v), want %q", h, back.String(), err, r.String())
		}
	}
}

// TestAuditPayloadValuesAreTheSpans: a payload's generic fields say
// "Table Start+Count = Values", and that is the line the syslog export
// sends (audit.FormatBody without the Modbus formatter). Values must be
// the registers of that span: a read/write multiple registers' Start and
// Count are its read span, so its written values (at WriteStart) must not
// appear there, and a mask write's and/or masks are not two register
// values.
func TestAuditPayloadValuesAreTheSpans(t *testing.T) {
	at := time.Date(2026, 11, 22, 14, 3, 4, 0, time.UTC)
	cases := []struct {
		req, resp string
		want      []int64
		line      string // the generic line, after "modbus unit 1 "
	}{
		{"03 0000 0002", "03 04 000a 0014", []int64{10, 20}, "fc 3 read-holding-registers holding 0+2 = [10 20] ok"},
		{"10 0032 0002 04 0001 0002", "10 0032 0002", []int64{1, 2}, "fc 16 write-multiple-registers holding 50+2 = [1 2] ok"},
		// read 0..1 (returns 9 8), write 50 = 7
		{"17 0000 0002 0032 0001 02 0007", "17 04 0009 0008", []int64{9, 8}, "fc 23 read-write-multiple-registers holding 0+2 = [9 8] ok"},
		{"16 0034 00f2 0025", "16 0034 00f2 0025", nil, "fc 22 mask-write-register holding 52+1 ok"},
	}
	for _, c := range cases {
		var q Request
		if err := q.Parse(adu(1, 1, pdu(t, c.req))); err != nil {
			t.Fatalf("parse %s: %v", c.req, err)
		}
		var p Response
		if err := p.Parse(adu(1, 1, pdu(t, c.resp))); err != nil {
			t.Fatalf("parse %s: %v", c.resp, err)
		}
		var r Record
		r.fillRequest(&q, at)
		r.Verdict = VerdictAllowed
		r.fillResponse(&p, at)
		pl := AuditPayload("s1", &r, nil)
		if !reflect.DeepEqual(pl.Decoded.Values, c.want) {
			t.Errorf("%s: Values %v, want %v (the registers of %s %d+%d)", c.req, pl.Decoded.Values, c.want, pl.Decoded.Table, pl.Decoded.Start, pl.Decoded.Count)
		}
		if line := audit.FormatBody(audit.TimestampOf(at), pl, audit.ShowOptions{}); !strings.Contains(line, "modbus unit 1 "+c.line) {
			t.Errorf("%s: generic line %q, want it to contain %q", c.req, line, c.line)
		}
	}
}

// The syslog export sends a Modbus transaction as its transcript line,
// with the user and asset of its session (what `otgate audit show`
// prints), not the generic rendering: a read/write multiple's line names
// the write's address and value, which the generic line cannot.
func TestTranscriptLineInSyslog(t *testing.T) {
	at := time.Date(2026, 11, 22, 14, 3, 4, 120000000, time.UTC)
	var q Request
	if err := q.Parse(adu(1, 1, pdu(t, "17 0000 0002 0032 0001 02 0007"))); err != nil {
		t.Fatal(err)
	}
	var p Response
	if err := p.Parse(adu(1, 1, pdu(t, "17 04 0009 0008"))); err != nil {
		t.Fatal(err)
	}
	var r Record
	r.fillRequest(&q, at)
	r.Verdict = VerdictAllowed
	r.fillResponse(&p, at.Add(1200*time.Microsecond))
	pl := AuditPayload("s1", &r, nil)
	want := string(r.AppendText(nil, "alice", "plc-7"))
	if line, ok := TranscriptLine(pl, "alice", "plc-7"); !ok || line != want {
		t.Fatalf("TranscriptLine: %q %v, want %q", line, ok, want)
	}
	t.Logf("transcript line: %s", want)
	if !strings.Contains(want, "50") || !strings.Contains(want, "alice plc-7 unit 1") {
		t.Fatalf("transcript line %q does not name the user, asset and the write's address", want)
	}
	e := audit.Entry{Record: audit.Record{Seq: 9, Time: audit.TimestampOf(at), Kind: audit.KindPayload}, Body: pl}
	formatters := map[string]audit.PayloadFormatter{"modbus": func(p audit.Payload, s *audit.SessionStart) (string, bool) {
		return TranscriptLine(p, s.User, s.Asset)
	}}
	msg := syslog.FormatWith(e, "log-1", "gate", "otgate", map[string]syslog.Labels{"s1": {User: "alice", Asset: "plc-7"}}, formatters)
	if !strings.HasSuffix(msg, "] session s1 "+want) || !strings.Contains(msg, `session="s1" user="alice" asset="plc-7"`) {
		t.Errorf("syslog message %q, want it to end with the transcript line %q and carry the labels", msg, want)
	}
	// Without formatters (or one that declines) the generic line.
	if msg := syslog.Format(e, "log-1", "gate", "otgate", nil); !strings.Contains(msg, "modbus unit 1 fc 23") {
		t.Errorf("generic syslog message %q", msg)
	}
	declines := map[string]audit.PayloadFormatter{"modbus": func(audit.Payload, *audit.SessionStart) (string, bool) { return "", false }}
	if msg := syslog.FormatWith(e, "log-1", "gate", "otgate", nil, declines); !strings.Contains(msg, "modbus unit 1 fc 23") {
		t.Errorf("syslog message with a declining formatter %q, want the generic line", msg)
	}
}

// TestAuditPayloadFIFOGenericLine: the generic line of a read FIFO queue
// (24) shows the queue's values with the FIFO count and pointer, not as
// the registers from the pointer on ("holding 16+2 = [99 98]" said
// registers 16 and 17 hold 99 and 98), while the transcript line read
// back is the record's. A record written before (table holding, count
// the FIFO count) still reads back to its transcript line.
func TestAuditPayloadFIFOGenericLine(t *testing.T) {
	at := time.Date(2026, 11, 22, 14, 3, 4, 0, time.UTC)
	cases := []struct {
		name       string
		req, resp  string // resp "": denied
		values     []int64
		line       string // the generic line, after "modbus unit 1 "
		transcript string // after "unit 1 "
	}{
		{"two queued", "18 0010", "18 0006 0002 0063 0062", []int64{99, 98},
			"fc 24 read-fifo-queue = [99 98] ok fifo-count=2 fifo-pointer=16", "read fifo holding 16 -> ok = 99 98"},
		{"one queued", "18 04de", "18 0004 0001 01b8", []int64{440},
			"fc 24 read-fifo-queue = [440] ok fifo-count=1 fifo-pointer=1246", "read fifo holding 1246 -> ok = 440"},
		{"empty queue", "18 0010", "18 0002 0000", nil,
			"fc 24 read-fifo-queue ok fifo-count=0 fifo-pointer=16", "read fifo holding 16 -> ok"},
		{"exception", "18 0010", "98 02", nil,
			"fc 24 read-fifo-queue exception 2 fifo-pointer=16", "read fifo holding 16 -> exception 02 illegal data address"},
		{"denied", "18 0100", "", nil,
			"fc 24 read-fifo-queue denied: r (exception 2) fifo-pointer=256", "read fifo holding 256 -> denied, exception 02 illegal data address: r"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var q Request
			if err := q.Parse(adu(1, 1, pdu(t, c.req))); err != nil {
				t.Fatalf("parse %s: %v", c.req, err)
			}
			var r Record
			r.fillRequest(&q, at)
			if c.resp == "" {
				r.Verdict, r.DenyException, r.Reason = VerdictDenied, ExIllegalDataAddress, "r"
				r.ResponseTime, r.Outcome, r.Exception = at, OutcomeException, ExIllegalDataAddress
			} else {
				var p Response
				if err := p.Parse(adu(1, 1, pdu(t, c.resp))); err != nil {
					t.Fatalf("parse %s: %v", c.resp, err)
				}
				r.Verdict = VerdictAllowed
				r.fillResponse(&p, at)
			}
			if got := r.String(); got != "14:03:04.000 unit 1 "+c.transcript {
				t.Fatalf("transcript %q, want %q", got, "14:03:04.000 unit 1 "+c.transcript)
			}
			pl := AuditPayload("s1", &r, nil)
			if !reflect.DeepEqual(pl.Decoded.Values, c.values) {
				t.Errorf("Values %v, want %v", pl.Decoded.Values, c.values)
			}
			if line := audit.FormatBody(audit.TimestampOf(at), pl, audit.ShowOptions{}); !strings.HasSuffix(line, "modbus unit 1 "+c.line) {
				t.Errorf("generic line %q, want it to end with %q", line, "modbus unit 1 "+c.line)
			}
			back, err := RecordOf(pl)
			if err != nil {
				t.Fatal(err)
			}
			if back.Table != r.Table || back.Count != r.Count {
				t.Errorf("read back table %v count %d, want %v %d", back.Table, back.Count, r.Table, r.Count)
			}
			want := string(r.AppendText(nil, "alice", "plc-7"))
			if line, ok := TranscriptLine(pl, "alice", "plc-7"); !ok || line != want {
				t.Errorf("TranscriptLine %q %v, want %q", line, ok, want)
			}
			// As written before: table holding, count the FIFO count, no Detail.
			old := *pl.Decoded
			old.Table, old.Count, old.Detail = "holding", uint32(r.Count), nil
			pl.Decoded = &old
			if line, ok := TranscriptLine(pl, "alice", "plc-7"); !ok || line != want {
				t.Errorf("TranscriptLine of a record written before: %q %v, want %q", line, ok, want)
			}
		})
	}
}
