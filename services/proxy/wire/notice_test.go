package wire

import (
	"bytes"
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
	// Strict like every frame of the wire: an unknown field is an error.
	b, _ := Marshal(map[int]any{1: NoticeEnded, 99: "x"})
	if err := Unmarshal(b, &out); err == nil {
		t.Fatal("a notice with an unknown field decoded")
	}
}
