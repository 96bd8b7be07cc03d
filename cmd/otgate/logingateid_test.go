//go:build !windows

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/services/proxy"
)

// TestLoginWithCABindsTheGateIdentity: two gates whose device
// certificates one enterprise CA issued. A login with --ca alone from a
// script sends nothing and names the identity to check; a login bound to
// one gate's identity refuses the other at the address given; the
// profile, bound at its login, refuses the other gate at its address
// later (assets, a new login), naming both identities and how to trust
// the new one on purpose.
func TestLoginWithCABindsTheGateIdentity(t *testing.T) {
	caFile, certify := enterpriseCA(t)
	a, b := startHostGateCertified(t, certify), startHostGateCertified(t, certify)
	if a.ID == b.ID {
		t.Fatalf("two gates with one identity %s", a.ID)
	}
	keyA, keyB := a.enrol("alice"), b.enrol("alice")
	home := t.TempDir()
	issued := func(g *hostGate) bool { return g.hasEvent("alice", proxy.EventCertIssued, "") }
	loginTo := func(codeFor *hostGate, addr string, args ...string) otgateRun {
		t.Helper()
		k := keyA
		if codeFor == b {
			k = keyB
		}
		args = append(append([]string{"login", "--user", "alice", "--code", code(t, k), "--password-stdin", "--ca", caFile}, args...), addr)
		return runOtgate(t, home, hostGatePassword+"\n", args...)
	}

	// --ca alone, from a script: nothing sent, the identity named.
	r := loginTo(a, a.Addr)
	want := "otgate login: first connection to " + a.Addr + ": its certificate verifies with " + caFile + " and names the gate " + a.ID +
		", but any gate or server that CA certified would verify too; compare the identity with the gate's console (the \"device identity\" line), then log in with --gate-id " +
		a.ID + "; no credential was sent\n"
	if r.code != 1 || r.stderr != want {
		t.Errorf("login with --ca alone: exit %d, stderr %q\nwant %q", r.code, r.stderr, want)
	}
	// b answering where the user expects a: refused, nothing sent.
	r = loginTo(b, b.Addr, "--gate-id", a.ID)
	want = "otgate login: the gate at " + b.Addr + " is not the gate identity given: its certificate verifies with " + caFile + " but names " + b.ID + ", not " + a.ID +
		"; no credential was sent: check the identity with the gate's administrator (the gate's console, \"device identity\" line)\n"
	if r.code != 1 || r.stderr != want {
		t.Errorf("login with --gate-id of a to b: exit %d, stderr %q\nwant %q", r.code, r.stderr, want)
	}
	if issued(a) || issued(b) {
		t.Fatal("a refused login got a certificate")
	}

	// a itself: bound.
	r = loginTo(a, a.Addr, "--gate-id", a.ID)
	if r.code != 0 || !strings.Contains(r.stdout, "bound this profile to the gate identity "+a.ID+" (its certificate verified with "+caFile+"): another identity will be refused, even one the CA certified\n") {
		t.Fatalf("login with --gate-id to a: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := runOtgate(t, home, "", "assets"); r.code != 0 {
		t.Fatalf("assets: exit %d, stderr %q", r.code, r.stderr)
	}

	// The profile's address now leads to b (a DNS or ARP spoofer, a
	// gate put in a's place): the profile refuses it.
	path := filepath.Join(profileDir(home), client.ProfileFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var p client.Profile
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	if p.GateID != a.ID {
		t.Fatalf("profile's gate_id %q, want %s", p.GateID, a.ID)
	}
	p.Gate = b.Addr
	if raw, err = json.Marshal(&p); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	changed := "WARNING: gate identity changed: the gate at " + b.Addr + " is not the one this profile is bound to: its certificate verifies with " + caFile +
		" but names " + b.ID + ", not " + a.ID + ": another gate or server that CA certified is answering at this address " +
		"(someone may be intercepting the connection, or the gate was replaced); nothing was sent to it. Only if its administrator confirms the gate was replaced and its identity is " +
		b.ID + ", log in again with --ca " + caFile + " --gate-id " + b.ID + "\n"
	if r := runOtgate(t, home, "", "assets"); r.code != 1 || r.stderr != "otgate assets: "+changed {
		t.Errorf("assets with b at the profile's address: exit %d, stderr %q\nwant %q", r.code, r.stderr, "otgate assets: "+changed)
	}
	if r := loginTo(b, b.Addr); r.code != 1 || r.stderr != "otgate login: "+changed {
		t.Errorf("login with b at the profile's address: exit %d, stderr %q\nwant %q", r.code, r.stderr, "otgate login: "+changed)
	}
	if issued(b) {
		t.Fatal("b got alice's credentials")
	}
	// Trusting b on purpose, as the error says.
	if r := loginTo(b, b.Addr, "--gate-id", b.ID); r.code != 0 || !strings.Contains(r.stdout, "bound this profile to the gate identity "+b.ID) {
		t.Errorf("login with --gate-id of b: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}
