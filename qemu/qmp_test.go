package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A QMP connection made while QEMU starts may get the RESUME event of
// the VM's start before the greeting (seen once in some hundred boots,
// as "unexpected greeting" failing Start). dialQMP takes the greeting
// after it and keeps the event.
func TestQMPEventBeforeGreeting(t *testing.T) {
	sock := fakeQMP(t, func(c net.Conn) {
		c.Write([]byte(`{"timestamp": {"seconds": 1795396990, "microseconds": 748945}, "event": "RESUME"}` + "\r\n"))
		c.Write([]byte(`{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}` + "\r\n"))
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if strings.Contains(line, `"qmp_capabilities"`) || strings.Contains(line, `"query-status"`) {
				answerQMP(t, c, line, `"return": {}`)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := dialQMP(ctx, sock, func() bool { return true })
	if err != nil {
		t.Fatalf("dialQMP with an event before the greeting: %v", err)
	}
	defer q.close()
	if _, err := q.execute(ctx, "query-status", nil); err != nil {
		t.Fatal(err)
	}
	ev := q.snapshot()
	if len(ev) != 1 || ev[0].Name != "RESUME" || ev[0].Time.Unix() != 1795396990 {
		t.Fatalf("events %v, want the RESUME before the greeting", ev)
	}
}

// Anything else before the greeting is still refused.
func TestQMPGarbageGreetingRefused(t *testing.T) {
	sock := fakeQMP(t, func(c net.Conn) { c.Write([]byte(`{"return": {}}` + "\n")) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := dialQMP(ctx, sock, func() bool { return true }); err == nil || !strings.Contains(err.Error(), "unexpected greeting") {
		t.Fatalf("dialQMP with a reply for a greeting: %v, want unexpected greeting", err)
	}
}

// fakeQMP listens on a QMP socket of its own and serves one connection
// with serve (closed after it), until the test ends.
func fakeQMP(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serve(c)
	}()
	return sock
}

// answerQMP writes the reply body (the members after the id, e.g.
// `"return": {}`) to the QMP request line, with the request's id as QEMU
// echoes it (none if the request had none).
func answerQMP(t *testing.T, c net.Conn, request, body string) {
	t.Helper()
	var req struct {
		ID json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal([]byte(request), &req); err != nil {
		t.Errorf("QMP request %q: %v", request, err)
		return
	}
	if req.ID == nil {
		fmt.Fprintf(c, "{%s}\r\n", body)
		return
	}
	fmt.Fprintf(c, "{%s, \"id\": %s}\r\n", body, req.ID)
}
