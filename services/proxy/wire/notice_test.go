package wire

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestNoticeRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	in := Notice{Kind: NoticeWarning, Session: "s1", Asset: "plc-7", Protocol: "modbus", Rule: "night-shift",
		Until: 1700000000, Left: 59000, Dropped: 2}
	if err := WriteFrame(&buf, in); err != nil {
		t.Fatal(err)
	}
	var out Notice
	if err := ReadFrame(&buf, &out); err != nil || out != in {
		t.Fatalf("ReadFrame = %+v, %v", out, err)
	}
	if out.LeftDuration() != 59*time.Second || out.UntilTime().Unix() != 1700000000 {
		t.Fatalf("LeftDuration %v, UntilTime %v", out.LeftDuration(), out.UntilTime())
	}
	if s := out.String(); !strings.Contains(s, "ends in 59s") || !strings.Contains(s, "night-shift") {
		t.Fatalf("String = %q", s)
	}
	// The gate reads strictly: an unknown field is an error.
	b, _ := Marshal(map[int]any{1: NoticeEnded, 99: "x"})
	if err := Unmarshal(b, &out); err == nil {
		t.Fatal("a notice with an unknown field decoded")
	}
}

// A client skips the fields a newer gate adds to what it sends (a notice,
// a tunnel's reply, a login response) and keeps those it knows; the
// gate's strict reading of the same frame refuses it.
func TestClientSkipsFieldsAGateAdds(t *testing.T) {
	for _, tc := range []struct {
		name string
		from map[int]any
		into func() any
		want any
	}{
		{"notice", map[int]any{1: NoticeEnded, 2: "s1", 8: "deadline", 99: "a field of a newer gate"},
			func() any { return new(Notice) }, &Notice{Kind: NoticeEnded, Session: "s1", Reason: "deadline"}},
		{"reply", map[int]any{1: true, 2: "r1", 99: []int{1, 2}},
			func() any { return new(Reply) }, &Reply{Accept: true, Rule: "r1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteFrame(&buf, tc.from); err != nil {
				t.Fatal(err)
			}
			frame := buf.Bytes()
			got := tc.into()
			if err := ReadFromGate(bytes.NewReader(frame), got); err != nil {
				t.Fatalf("ReadFromGate: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ReadFromGate = %+v, want %+v", got, tc.want)
			}
			if err := ReadFrame(bytes.NewReader(frame), tc.into()); err == nil {
				t.Fatal("the gate's strict ReadFrame took a frame with an unknown field")
			}
		})
	}
	// Skipping is not a licence for anything else: bounds still hold.
	var n Notice
	if err := ReadFromGate(strings.NewReader("\x00\x00\x00\x01\xff"), &n); err == nil {
		t.Fatal("ReadFromGate decoded a malformed frame")
	}
}
