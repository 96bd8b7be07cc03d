//go:build !windows

package main

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/services/proxy"
)

// TestLoginConfirmedIdentityWithARelativeCA: a first login at a terminal
// with --ca given relative to the working directory. The question and
// the "bound" line name the CA file as the profile stores it (an
// absolute path, as later commands from other directories need), not as
// typed. When another gate the CA certified answers at the address
// between the question and the login, the login is refused saying the
// identity was the one confirmed at the prompt (not one given), and
// nothing is sent or stored.
func TestLoginConfirmedIdentityWithARelativeCA(t *testing.T) {
	caFile, certify := enterpriseCA(t)
	a, b := startHostGateCertified(t, certify), startHostGateCertified(t, certify)
	keyA := a.enrol("alice")
	b.enrol("alice")
	addr, switchTo := switchingForwarder(t, a.Addr)
	home := t.TempDir()
	prof := filepath.Join(t.TempDir(), "profile")
	profPath := filepath.Join(prof, client.ProfileFile)
	wd, rel := filepath.Dir(caFile), filepath.Base(caFile)
	if rel == caFile || !filepath.IsAbs(caFile) {
		t.Fatalf("CA file %s: want an absolute path", caFile)
	}
	question := "first connection to " + addr + ": its certificate verifies with " + caFile + " and names the gate\r\n  " + a.ID + "\r\n" +
		"any gate or server that CA certified would verify too: compare the identity with the gate's console (the \"device identity\" line).\r\n" +
		"send your credentials to this gate and bind this profile to its identity? (yes/no): "
	askedFirst := func(tm *terminal) {
		t.Helper()
		shown := tm.waitForNone(t, "(yes/no): ", "user: ", "password: ")
		if !strings.HasSuffix(shown, question) {
			t.Errorf("the terminal showed, up to the question:\n%q\nwant it to end with\n%q", shown, question)
		}
	}
	args := []string{"login", "--profile", prof, "--ca", rel, "--code", code(t, keyA), addr}

	// b answers once a's identity is confirmed: refused, as confirmed.
	refused := "otgate login: the gate at " + addr + " is not the gate identity confirmed at the prompt: its certificate verifies with " + caFile +
		" but names " + b.ID + ", not " + a.ID + ": another gate or server that CA certified answered after the prompt (someone may be intercepting the connection); " +
		"no credential was sent: check the identity with the gate's administrator (the gate's console, \"device identity\" line)\r\n"
	out, exit := loginAtTerminalIn(t, wd, home, args, func(tm *terminal) {
		askedFirst(tm)
		switchTo(b.Addr)
		tm.typeLine(t, "yes")
		tm.waitFor(t, "user: ")
		tm.typeLine(t, "alice")
		tm.waitFor(t, "password: ")
		tm.typeLine(t, hostGatePassword)
		tm.waitForNone(t, "otgate login: ", "logged in as")
		tm.waitFor(t, "line)\r\n")
	})
	if exit != 1 || !strings.Contains(out, refused) {
		t.Errorf("b answering after the question: exit %d, the terminal showed:\n%s\nwant the line %q", exit, out, refused)
	}
	if _, err := os.Stat(profPath); err == nil {
		t.Errorf("the refused login stored a profile")
	}
	for _, g := range []*hostGate{a, b} {
		if g.hasEvent("alice", proxy.EventCertIssued, "") {
			t.Fatalf("the refused login got a certificate from %s", g.ID)
		}
	}

	// a answers: bound, the line naming the CA file stored.
	switchTo(a.Addr)
	out, exit = loginAtTerminalIn(t, wd, home, args, func(tm *terminal) {
		askedFirst(tm)
		tm.typeLine(t, "yes")
		tm.waitFor(t, "user: ")
		tm.typeLine(t, "alice")
		tm.waitFor(t, "password: ")
		tm.typeLine(t, hostGatePassword)
		tm.waitForNone(t, "logged in as alice", "otgate login: ")
	})
	bound := "bound this profile to the gate identity " + a.ID + " (its certificate verified with " + caFile + "): another identity will be refused, even one the CA certified\r\n"
	if exit != 0 || !strings.Contains(out, bound) {
		t.Fatalf("a answering: exit %d, the terminal showed:\n%s\nwant the line %q", exit, out, bound)
	}
	if p := readPromptTestProfile(t, profPath); p.GateID != a.ID || p.CAFile != caFile {
		t.Fatalf("stored profile %+v, want bound to %s with CA file %s", p, a.ID, caFile)
	}
}

// TestLoginConfirmedKeyChangedBeforeLogin: a first login at a terminal
// without --ca whose gate key the user confirmed, when another gate
// answers at the address between the question and the login, is refused
// saying the key was the one confirmed at the prompt (not a pin given);
// nothing is sent or stored.
func TestLoginConfirmedKeyChangedBeforeLogin(t *testing.T) {
	a, b := startHostGate(t), startHostGate(t)
	keyA := a.enrol("alice")
	b.enrol("alice")
	addr, switchTo := switchingForwarder(t, a.Addr)
	home := t.TempDir()
	prof := filepath.Join(t.TempDir(), "profile")
	refused := "otgate login: the key of gate " + addr + " is not the one confirmed at the prompt: you confirmed SHA-256 " + a.Fingerprint +
		", the gate showed SHA-256 " + b.Fingerprint + " after the prompt (another server answered at this address: someone may be intercepting the connection); " +
		"no credential was sent: compare the key with the gate's console (the proxy's \"gate key SHA-256\" line)\r\n"
	out, exit := loginAtTerminal(t, home, []string{"login", "--profile", prof, "--user", "alice", "--code", code(t, keyA), addr}, func(tm *terminal) {
		shown := tm.waitForNone(t, "(yes/no): ", "password: ")
		if !strings.Contains(shown, "first connection to "+addr+": its key has SHA-256\r\n  "+a.Fingerprint+"\r\n") {
			t.Errorf("the question does not show a's key %s:\n%s", a.Fingerprint, shown)
		}
		switchTo(b.Addr)
		tm.typeLine(t, "yes")
		tm.waitFor(t, "password: ")
		tm.typeLine(t, hostGatePassword)
		tm.waitForNone(t, "otgate login: ", "logged in as")
		tm.waitFor(t, "line)\r\n")
	})
	if exit != 1 || !strings.Contains(out, refused) {
		t.Errorf("b answering after the question: exit %d, the terminal showed:\n%s\nwant the line %q", exit, out, refused)
	}
	if _, err := os.Stat(filepath.Join(prof, client.ProfileFile)); err == nil {
		t.Errorf("the refused login stored a profile")
	}
	for _, g := range []*hostGate{a, b} {
		if g.hasEvent("alice", proxy.EventCertIssued, "") {
			t.Fatalf("the refused login got a certificate from %s", g.Addr)
		}
	}
}

// switchingForwarder relays each connection to its address to the
// backend switchTo named last (first backend); connections already
// relayed stay with theirs.
func switchingForwarder(t *testing.T, backend string) (addr string, switchTo func(string)) {
	t.Helper()
	var to atomic.Pointer[string]
	to.Store(&backend)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s, err := net.Dial("tcp", *to.Load())
				if err != nil {
					return
				}
				defer s.Close()
				go func() { io.Copy(s, c); s.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, s)
			}()
		}
	}()
	return ln.Addr().String(), func(b string) { to.Store(&b) }
}
