package wire

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{Asset: "plc-7", Protocol: "modbus"},
		{Asset: "a", Protocol: "tcp"},
		{Asset: strings.Repeat("x", MaxAssetLen), Protocol: strings.Repeat("p", MaxProtocolLen)},
	} {
		b, err := h.AppendBinary(nil)
		if err != nil {
			t.Fatalf("%+v: %v", h, err)
		}
		// Payload after the header must stay in the reader.
		r := bytes.NewReader(append(b, "payload"...))
		got, err := ReadHeader(r)
		if err != nil || got != h {
			t.Fatalf("ReadHeader = %+v, %v; want %+v", got, err, h)
		}
		rest, _ := io.ReadAll(r)
		if string(rest) != "payload" {
			t.Fatalf("ReadHeader consumed payload: rest %q", rest)
		}
		got, n, err := DecodeHeader(b)
		if err != nil || got != h || n != len(b) {
			t.Fatalf("DecodeHeader = %+v, %d, %v", got, n, err)
		}
		for i := 0; i < len(b); i++ {
			if _, _, err := DecodeHeader(b[:i]); err != io.ErrUnexpectedEOF {
				t.Fatalf("prefix of %d bytes: %v, want io.ErrUnexpectedEOF", i, err)
			}
		}
	}
}

func TestHeaderErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"magic", []byte("XT\x01\x00\x01a\x03tcp"), "byte 0: magic"},
		{"version", []byte("OT\x02\x00\x01a\x03tcp"), "byte 2: version 2"},
		{"flags", []byte("OT\x01\x01\x01a\x03tcp"), "byte 3: flags"},
		{"empty asset", []byte("OT\x01\x00\x00\x03tcp"), "asset name length 0"},
		{"long asset", []byte("OT\x01\x00\x40"), "asset name length 64"},
		{"empty protocol", []byte("OT\x01\x00\x01a\x00"), "protocol name length 0"},
		{"upper case", []byte("OT\x01\x00\x01A\x03tcp"), `asset name "A"`},
		{"slash", []byte("OT\x01\x00\x03a/b\x03tcp"), `byte 1 is '/'`},
		{"leading dash", []byte("OT\x01\x00\x01a\x04-tcp"), `protocol name "-tcp"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := DecodeHeader(tc.in)
			if !errors.Is(err, ErrHeader) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("DecodeHeader: %v, want ErrHeader mentioning %q", err, tc.want)
			}
			_, err = ReadHeader(bytes.NewReader(tc.in))
			if !errors.Is(err, ErrHeader) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ReadHeader: %v, want ErrHeader mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := (Header{Asset: "PLC", Protocol: "modbus"}).AppendBinary(nil); !errors.Is(err, ErrHeader) {
		t.Fatalf("AppendBinary of a bad name: %v", err)
	}
	if _, err := ReadHeader(bytes.NewReader([]byte("OT\x01"))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short stream: %v", err)
	}
}

// FuzzDecodeHeader checks that DecodeHeader and ReadHeader agree, never
// panic, and that whatever they accept re-encodes to the same bytes.
func FuzzDecodeHeader(f *testing.F) {
	f.Add([]byte("OT\x01\x00\x05plc-7\x06modbus"))
	f.Add([]byte("OT\x01\x00\x01a\x03tcp"))
	f.Add([]byte("OT\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := DecodeHeader(b)
		rh, rerr := ReadHeader(bytes.NewReader(b))
		if err == nil {
			if rerr != nil || rh != h {
				t.Fatalf("ReadHeader = %+v, %v; DecodeHeader = %+v", rh, rerr, h)
			}
			enc, eerr := h.AppendBinary(nil)
			if eerr != nil || !bytes.Equal(enc, b[:n]) {
				t.Fatalf("re-encode = %x, %v; input %x", enc, eerr, b[:n])
			}
			return
		}
		if rerr == nil {
			t.Fatalf("ReadHeader accepted %x that DecodeHeader refused: %v", b, err)
		}
		if !errors.Is(err, ErrHeader) && err != io.ErrUnexpectedEOF {
			t.Fatalf("DecodeHeader error %v is neither ErrHeader nor io.ErrUnexpectedEOF", err)
		}
	})
}

func TestFrameRoundTripAndLimits(t *testing.T) {
	var buf bytes.Buffer
	in := Reply{Accept: true, Rule: "r1", Reason: "granted", Until: 1700000000, Session: "s1"}
	if err := WriteFrame(&buf, in); err != nil {
		t.Fatal(err)
	}
	var out Reply
	if err := ReadFrame(&buf, &out); err != nil || out != in {
		t.Fatalf("ReadFrame = %+v, %v", out, err)
	}
	if err := ReadFrame(bytes.NewReader([]byte{0, 1, 0, 1}), &out); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("oversized frame: %v", err)
	}
	if s := (Request{Op: OpLogin, User: "alice", Password: "hunter2", Code: "123456"}).String(); strings.Contains(s, "hunter2") || strings.Contains(s, "123456") {
		t.Fatalf("Request.String leaks secrets: %s", s)
	}
}
