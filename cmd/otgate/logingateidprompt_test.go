//go:build !windows

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/services/proxy"
	"github.com/otgate/otgate/services/proxy/auth/totp"
)

// TestLoginAsksToConfirmTheGateIdentity: a first login with --ca and no
// --gate-id at a terminal shows the CA file and the gate identity the
// gate's certificate names, and asks before any user name or password is
// asked for or sent; "no" sends nothing, stores nothing and exits 1;
// "yes" asks for the user and password, logs in and binds the profile to
// that identity; a later login with the profile asks nothing about it.
func TestLoginAsksToConfirmTheGateIdentity(t *testing.T) {
	caFile, certify := enterpriseCA(t)
	g := startHostGateCertified(t, certify)
	key := g.enrol("alice")
	home := t.TempDir()
	prof := filepath.Join(t.TempDir(), "profile")
	profPath := filepath.Join(prof, client.ProfileFile)
	question := "first connection to " + g.Addr + ": its certificate verifies with " + caFile + " and names the gate\r\n  " + g.ID + "\r\n" +
		"any gate or server that CA certified would verify too: compare the identity with the gate's console (the \"device identity\" line).\r\n" +
		"send your credentials to this gate and bind this profile to its identity? (yes/no): "
	// The question comes first: before it, nothing is asked (a prompt
	// shown instead fails the test at once).
	askedFirst := func(tm *terminal) {
		t.Helper()
		shown := tm.waitForNone(t, "(yes/no): ", "user: ", "password: ")
		if !strings.HasSuffix(shown, question) {
			t.Errorf("the terminal showed, up to the question:\n%q\nwant it to end with\n%q", shown, question)
		}
	}

	// "no": nothing sent, nothing stored.
	before := len(g.events("alice"))
	refused := `otgate login: gate identity not confirmed (answered "no", want yes): no credential was sent`
	out, exit := loginAtTerminal(t, home, []string{"login", "--profile", prof, "--ca", caFile, "--code", code(t, key), g.Addr}, func(tm *terminal) {
		askedFirst(tm)
		tm.typeLine(t, "no")
		tm.waitForNone(t, refused+"\r\n", "user: ", "password: ")
	})
	if exit != 1 || !strings.Contains(out, refused+"\r\n") || strings.Contains(out, "password") {
		t.Fatalf("answer no: exit %d, the terminal showed:\n%s", exit, out)
	}
	if _, err := os.Stat(profPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("answer no stored a profile (%v)", err)
	}
	if ev := g.events("alice"); len(ev) != before {
		t.Fatalf("answer no reached the gate: alice's events %+v, %d before", ev, before)
	}

	// "yes": the user and password asked, logged in, bound.
	out, exit = loginAtTerminal(t, home, []string{"login", "--profile", prof, "--ca", caFile, "--code", code(t, key), g.Addr}, func(tm *terminal) {
		askedFirst(tm)
		tm.typeLine(t, "yes")
		tm.waitFor(t, "user: ")
		tm.typeLine(t, "alice")
		tm.waitFor(t, "password: ")
		tm.typeLine(t, hostGatePassword)
		tm.waitForNone(t, "logged in as alice", "otgate login: ")
	})
	bound := "bound this profile to the gate identity " + g.ID + " (its certificate verified with " + caFile + "): another identity will be refused, even one the CA certified\r\n"
	if exit != 0 || !strings.Contains(out, bound) ||
		!strings.Contains(out, "first connection to "+g.Addr+": pinned its certificate, SHA-256 of its key "+g.Fingerprint+"\r\n") {
		t.Fatalf("answer yes: exit %d, the terminal showed:\n%s\nwant the line %q", exit, out, bound)
	}
	p := readPromptTestProfile(t, profPath)
	if p.Gate != g.Addr || p.GateID != g.ID || p.CAFile != caFile || p.Pin != g.Fingerprint || p.User != "alice" {
		t.Fatalf("stored profile %+v, want gate %s bound to %s with CA file %s, pin %s, user alice", p, g.Addr, g.ID, caFile, g.Fingerprint)
	}
	if !g.hasEvent("alice", proxy.EventCertIssued, "") {
		t.Fatal("answer yes: the gate issued alice no certificate")
	}

	// Later, as the profile's relogin hint says (--ca again): the
	// password is the first thing asked, nothing about the identity (the
	// code of the next step: each code works once).
	next, err := totp.Code(key.Secret, time.Now().Add(30*time.Second), key.Params)
	if err != nil {
		t.Fatal(err)
	}
	out, exit = loginAtTerminal(t, home, []string{"login", "--profile", prof, "--ca", caFile, "--user", "alice", "--code", next, g.Addr}, func(tm *terminal) {
		shown := tm.waitForNone(t, "password: ", "(yes/no): ")
		if shown != "password: " {
			t.Errorf("the later login showed before the password prompt:\n%s", shown)
		}
		tm.typeLine(t, hostGatePassword)
		tm.waitForNone(t, "logged in as alice", "otgate login: ")
	})
	if exit != 0 || strings.Contains(out, g.ID) || strings.Contains(out, "first connection") {
		t.Fatalf("later login: exit %d, the terminal showed:\n%s", exit, out)
	}
	if p := readPromptTestProfile(t, profPath); p.GateID != g.ID {
		t.Fatalf("after the later login the profile's gate_id is %q, want %s", p.GateID, g.ID)
	}
}

// loginAtTerminal runs `otgate args...` with a pseudo-terminal as its
// standard input, output and error (the user's config directory under
// home), lets dialogue answer it, and returns what the terminal showed
// and the exit status. dialogue must wait for the program's last words:
// they are all the terminal is sure to have shown when it exits.
func loginAtTerminal(t *testing.T, home string, args []string, dialogue func(tm *terminal)) (string, int) {
	t.Helper()
	return loginAtTerminalIn(t, "", home, args, dialogue)
}

// loginAtTerminalIn is loginAtTerminal run in the working directory dir
// ("": the test's).
func loginAtTerminalIn(t *testing.T, dir, home string, args []string, dialogue func(tm *terminal)) (string, int) {
	t.Helper()
	master, slave := openPTY(t)
	tm := newTerminal(master)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	defer func() {
		if !waited { // dialogue failed the test: end the child
			cancel()
			cmd.Wait()
		}
	}()
	dialogue(tm)
	err := cmd.Wait()
	waited = true
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("otgate %s: %v", strings.Join(args, " "), err)
	}
	tm.mu.Lock()
	defer tm.mu.Unlock()
	t.Logf("$ otgate %s  (exit %d, at a terminal)\n%s", strings.Join(args, " "), cmd.ProcessState.ExitCode(), tm.seen.String())
	return tm.seen.String(), cmd.ProcessState.ExitCode()
}

// waitForNone is waitFor that fails the test at once if the terminal
// shows one of unwanted before want (a prompt where the program would
// wait for an answer the test does not give); it returns what the
// terminal showed up to the end of want.
func (tm *terminal) waitForNone(t *testing.T, want string, unwanted ...string) string {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		tm.mu.Lock()
		out := tm.seen.String()
		tm.mu.Unlock()
		i := strings.Index(out, want)
		upTo := out
		if i >= 0 {
			upTo = out[:i+len(want)]
		}
		for _, u := range unwanted {
			if j := strings.Index(out, u); j >= 0 && (i < 0 || j < i) {
				t.Fatalf("the terminal showed %q before %q:\n%s", u, want, out)
			}
		}
		if i >= 0 {
			return upTo
		}
		if time.Now().After(deadline) {
			t.Fatalf("the terminal never showed %q; it showed:\n%s", want, out)
		}
	}
}

// enterpriseCA makes an enterprise CA, writes its certificate to a PEM
// file, and returns the file and a function that certifies a gate's
// device key with the names of its identity's certificate (as
// startHostGateCertified wants).
func enterpriseCA(t *testing.T) (string, func(device *x509.Certificate) []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "plant-1 enterprise CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "gate-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return caFile, func(device *x509.Certificate) []byte {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: device.Subject, URIs: device.URIs,
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, device.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
}

// readPromptTestProfile reads the stored profile at path.
func readPromptTestProfile(t *testing.T, path string) client.Profile {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var p client.Profile
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	return p
}
