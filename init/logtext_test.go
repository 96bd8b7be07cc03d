package main

import (
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/initstatus"
)

// roundTrip encodes resp as init answers and decodes it as a client does.
func roundTrip(t *testing.T, resp initstatus.Response) error {
	t.Helper()
	b, err := initstatus.EncMode().Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var got initstatus.Response
	return initstatus.DecMode().Unmarshal(b, &got)
}

// The ring holds what services write, which may be any bytes and any
// length: every line is kept as valid UTF-8 (the log op's CBOR answer is
// otherwise rejected whole by the client) and at most maxLine bytes (the
// ring's memory stays bounded).
func TestLoggerLinesValidAndBounded(t *testing.T) {
	log := newLogger(io.Discard)
	log.line("svc: binary \xff\xfe garbage")
	log.line("svc: " + strings.Repeat("é", 1<<20)) // 2 MiB, cut inside no character
	log.Printf("unknown notify message %q", strings.Repeat("x", 1<<20))
	lines := log.Lines()
	for i, l := range lines {
		if !utf8.ValidString(l) {
			t.Errorf("line %d is not valid UTF-8: %q", i, l)
		}
		if len(l) > maxLine {
			t.Errorf("line %d: %d bytes, more than %d", i, len(l), maxLine)
		}
	}
	if !strings.HasSuffix(lines[1], " [...]") {
		t.Errorf("a cut line does not say so: ...%q", lines[1][len(lines[1])-20:])
	}
	if err := roundTrip(t, initstatus.Response{Log: lines}); err != nil {
		t.Fatalf("log answer does not decode: %v", err)
	}
}

// A reason a service sends (STATUS=, HEALTHY=0) goes into the status
// answer: bad bytes or a huge one must not make `otgate status` fail.
func TestServiceNoteValidAndBounded(t *testing.T) {
	sh, err := lookPath("sh")
	if err != nil {
		t.Skip(err)
	}
	script := `printf 'STATUS=bad \377 byte\n' >&3; echo READY=1 >&3; ` +
		`{ printf 'HEALTHY=0 \377 '; head -c 30000 /dev/zero | tr '\0' x; echo; } >&3; exec sleep 100`
	s := bootcfg.Service{Name: "odd", Binary: sh, Args: []string{"-c", script}, Readiness: bootcfg.ReadyNotify}
	sv, log := runSupervisor(t, &bootcfg.Config{Services: []bootcfg.Service{s}})
	waitLine(t, log, "init: odd unhealthy: ")
	snap := sv.snapshot()
	if r := snap[0].Reason; !utf8.ValidString(r) || len(r) > maxNote {
		t.Errorf("reason: %d bytes, valid UTF-8 %v", len(r), utf8.ValidString(r))
	}
	if err := roundTrip(t, initstatus.Response{Status: &initstatus.Status{Services: snap}}); err != nil {
		t.Fatalf("status answer does not decode: %v", err)
	}
	if got := serviceNote("bad \xff byte"); got != "bad \uFFFD byte" {
		t.Errorf("note %q", got)
	}
}
