package client

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testPin and otherPin are pins as login stores them (Fingerprint).
var (
	testPin  = strings.Repeat("ab", 32)
	otherPin = strings.Repeat("cd", 32)
)

func TestParseGate(t *testing.T) {
	for in, want := range map[string]string{
		"otgate://gate.plant:9443": "gate.plant:9443",
		"https://gate.plant":       "gate.plant:" + DefaultPort,
		"10.0.0.1":                 "10.0.0.1:" + DefaultPort,
		"[fd00::1]":                "[fd00::1]:" + DefaultPort,
		"gate:1234":                "gate:1234",
	} {
		got, err := ParseGate(in)
		if err != nil || got != want {
			t.Errorf("ParseGate(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "ftp://gate", "otgate://"} {
		if _, err := ParseGate(bad); err == nil {
			t.Errorf("ParseGate(%q) accepted", bad)
		}
	}
	// Each bad address is refused naming it and what is wrong, rather
	// than stored and found out at the first connection.
	for bad, why := range map[string]string{
		"gate.plant:84a3":              `port "84a3" is not a number from 1 to 65535`,
		"gate.plant:":                  `port "" is not a number from 1 to 65535`,
		"gate.plant:0":                 `port "0" is not a number from 1 to 65535`,
		"gate.plant:70000":             `port "70000" is not a number from 1 to 65535`,
		"gate.plant:+443":              `port "+443" is not a number from 1 to 65535`,
		":8443":                        "no host name or address",
		"otgate://gate.plant/assets":   "a gate is named by host and port alone (otgate://host[:port])",
		"https://al@gate.plant":        "a gate is named by host and port alone (otgate://host[:port])",
		"otgate://gate.plant:9443?x=1": "a gate is named by host and port alone (otgate://host[:port])",
	} {
		_, err := ParseGate(bad)
		if want := fmt.Sprintf("gate %q: %s", bad, why); err == nil || err.Error() != want {
			t.Errorf("ParseGate(%q): %v, want %s", bad, err, want)
		}
	}
	if got, err := ParseGate("otgate://gate.plant:9443/"); err != nil || got != "gate.plant:9443" {
		t.Errorf("ParseGate with a trailing slash: %q, %v", got, err)
	}
}

func TestProfileFilesAndErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "otgate")
	if _, err := Open(dir); err != ErrNoProfile {
		t.Fatalf("Open of an empty dir: %v, want ErrNoProfile", err)
	}
	cert := selfSigned(t, "alice")
	if err := storeLogin(dir, &Profile{Gate: "g:1", Pin: testPin}, cert.PrivateKey.(*ecdsa.PrivateKey), cert.Certificate, nil); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v, %v", st.Mode().Perm(), err)
	}
	if st, err := os.Stat(filepath.Join(dir, ProfileFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("profile mode %v, %v", st.Mode().Perm(), err)
	}
	os.WriteFile(filepath.Join(dir, ProfileFile), []byte("{not json"), 0o600)
	if _, err := LoadProfile(dir); err == nil {
		t.Fatal("a corrupt profile loaded")
	}
	if err := RemoveProfile(dir); err != nil {
		t.Fatal(err)
	}
}

// A key and a certificate that do not belong together (a login cut short
// by an older client, a file copied over) say to log in again.
func TestMismatchedCredentialSaysLogInAgain(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "otgate")
	alice, other := selfSigned(t, "alice"), selfSigned(t, "alice")
	if err := storeLogin(dir, &Profile{Gate: "g:1", Pin: testPin}, alice.PrivateKey.(*ecdsa.PrivateKey), alice.Certificate, nil); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(other.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(filepath.Join(dir, KeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir)
	if err == nil || !strings.HasPrefix(err.Error(), "the credential in "+dir+" is unusable (") || !strings.HasSuffix(err.Error(), "): log in again") {
		t.Fatalf("Open of a mismatched key and certificate: %v, want it to say to log in again", err)
	}
}
