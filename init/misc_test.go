package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"
)

func inputEvent(typ, code uint16, value int32) []byte {
	b := make([]byte, inputEventSize)
	binary.LittleEndian.PutUint16(b[16:], typ)
	binary.LittleEndian.PutUint16(b[18:], code)
	binary.LittleEndian.PutUint32(b[20:], uint32(value))
	return b
}

func TestReadKeysPowerPress(t *testing.T) {
	var in bytes.Buffer
	in.Write(inputEvent(evKey, 30, 1))       // KEY_A press
	in.Write(inputEvent(evKey, keyPower, 0)) // release only
	in.Write(inputEvent(0, 0, 0))            // SYN
	in.Write(inputEvent(evKey, keyPower, 1)) // press
	in.Write(inputEvent(evKey, keyPower, 0))
	n := 0
	readKeys(&in, func() { n++ })
	if n != 1 {
		t.Fatalf("%d power presses, want 1", n)
	}
}

func TestLoggerRing(t *testing.T) {
	var out bytes.Buffer
	l := newLogger(&out)
	for i := 0; i < ringSize+5; i++ {
		l.Printf("line %d", i)
	}
	lines := l.Lines()
	if len(lines) != ringSize || lines[0] != "init: line 5" || lines[ringSize-1] != fmt.Sprintf("init: line %d", ringSize+4) {
		t.Fatalf("ring: %d lines, first %q, last %q", len(lines), lines[0], lines[len(lines)-1])
	}
	if !strings.HasPrefix(out.String(), "init: line 0\n") {
		t.Fatalf("console output starts %q", out.String()[:20])
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		250 * time.Millisecond: "250ms", time.Second: "1s", 30 * time.Second: "30s", 2 * time.Minute: "2m0s",
	} {
		if got := short(d); got != want {
			t.Errorf("short(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestParseCmdline(t *testing.T) {
	m := parseCmdline("console=ttyS0 rdinit=/init otgate.test.stop_watchdog=1 quiet\n")
	if m[hookStopWatchdog] != "1" || m["console"] != "ttyS0" {
		t.Fatalf("%v", m)
	}
	if _, ok := m["quiet"]; !ok {
		t.Fatalf("bare word missing: %v", m)
	}
}
