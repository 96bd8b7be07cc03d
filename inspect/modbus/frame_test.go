package modbus

import (
	"encoding/hex"
	"strings"
	"testing"
)

// pdu decodes hex with spaces: "03 0000 000a".
func pdu(t testing.TB, h string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(h, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", h, err)
	}
	return b
}

// adu wraps a PDU in an MBAP header.
func adu(tid uint16, unit uint8, p []byte) []byte {
	b := make([]byte, HeaderLen, HeaderLen+len(p))
	putHeader(b, tid, unit, len(p))
	return append(b, p...)
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}
