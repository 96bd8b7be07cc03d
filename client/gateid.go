package client

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/url"
	"strings"

	"github.com/otgate/otgate/services/proxy/wire"
)

// A CA file vouches for every certificate it issued: another gate of the
// same site, or any server the enterprise CA certified, verifies as well
// as the gate the user meant. What names the gate is its identity, the
// SPIFFE ID its device certificate carries as a URI SAN,
// spiffe://SITE/gate/SERIAL (services/identity), as a SPIFFE-aware client
// checks the ID of its peer and not only its trust bundle. A profile made
// with a CA file is bound to that identity (Profile.GateID): given by the
// user (LoginOptions.GateID, `otgate login --gate-id`) or confirmed at
// the first login, and required of every connection after it.

// gateIdentity is the gate identity leaf names: its one URI SAN of the
// form spiffe://SITE/gate/SERIAL.
func gateIdentity(leaf *x509.Certificate) (string, error) {
	var ids []string
	for _, u := range leaf.URIs {
		if isGateID(u) {
			ids = append(ids, u.String())
		}
	}
	switch len(ids) {
	case 1:
		return ids[0], nil
	case 0:
		return "", fmt.Errorf("names no gate identity (a URI spiffe://SITE/gate/SERIAL): it is not an otgate gate's device certificate")
	default:
		return "", fmt.Errorf("names %d gate identities (%s), not one", len(ids), strings.Join(ids, ", "))
	}
}

// isGateID says whether u is a gate's SPIFFE ID, spiffe://SITE/gate/SERIAL
// (a service's, .../gate/SERIAL/service/NAME, is not).
func isGateID(u *url.URL) bool {
	serial, ok := strings.CutPrefix(u.EscapedPath(), "/gate/")
	return u.Scheme == "spiffe" && u.Opaque == "" && u.User == nil && u.Host != "" && u.Port() == "" &&
		u.Host == strings.ToLower(u.Host) && u.RawQuery == "" && u.Fragment == "" && !u.ForceQuery &&
		ok && serial != "" && !strings.ContainsAny(serial, "/%")
}

// CheckGateID returns id if it is a gate identity, spiffe://SITE/gate/SERIAL,
// else an error naming what is wrong.
func CheckGateID(id string) (string, error) {
	u, err := url.Parse(id)
	if err != nil || !isGateID(u) || u.String() != id {
		return "", fmt.Errorf("gate identity %q: want the gate's SPIFFE ID, spiffe://SITE/gate/SERIAL in lower case (the gate's console shows it on the \"device identity\" line, and `otgate identity status` on the gate)", id)
	}
	return id, nil
}

// IdentityChangedError is a gate whose certificate verifies with the
// profile's CA file but names another gate identity than the one the
// profile is bound to (or than the one given or confirmed): the connection ends
// before anything is sent.
type IdentityChangedError struct {
	Gate   string
	CAFile string
	Want   string // the identity bound (or given, or confirmed)
	Got    string // the one the gate's certificate names
	// Given: Want is the one given to Login (LoginOptions.GateID), not
	// one stored at an earlier login.
	Given bool
	// Confirmed: Want is the identity the user confirmed at a prompt
	// (LoginOptions.Confirmed): another gate answered since.
	Confirmed bool
}

func (e *IdentityChangedError) Error() string {
	if e.Confirmed {
		return fmt.Sprintf("the gate at %s is not the gate identity confirmed at the prompt: its certificate verifies with %s but names %s, not %s: "+
			"another gate or server that CA certified answered after the prompt (someone may be intercepting the connection); no credential was sent: "+
			"check the identity with the gate's administrator (the gate's console, \"device identity\" line)", e.Gate, e.CAFile, e.Got, e.Want)
	}
	if e.Given {
		return fmt.Sprintf("the gate at %s is not the gate identity given: its certificate verifies with %s but names %s, not %s; no credential was sent: "+
			"check the identity with the gate's administrator (the gate's console, \"device identity\" line)", e.Gate, e.CAFile, e.Got, e.Want)
	}
	return fmt.Sprintf("WARNING: gate identity changed: the gate at %s is not the one this profile is bound to: its certificate verifies with %s but names %s, "+
		"not %s: another gate or server that CA certified is answering at this address (someone may be intercepting the connection, or the gate was replaced); "+
		"nothing was sent to it. Only if its administrator confirms the gate was replaced and its identity is %s, log in again with --ca %s --gate-id %s",
		e.Gate, e.CAFile, e.Got, e.Want, e.Got, e.CAFile, e.Got)
}

// IdentityFirstUseError is Login's answer on a first login with a CA file
// and no gate identity to bind the profile to (nor a pin): the gate's
// certificate verifies with the CA, but so would that of any gate or
// server the CA certified. No credential was sent.
type IdentityFirstUseError struct {
	Gate        string
	CAFile      string
	GateID      string // the identity the gate's certificate names
	Fingerprint string // of its key
}

func (e *IdentityFirstUseError) Error() string {
	return fmt.Sprintf("first connection to %s: its certificate verifies with %s and names the gate %s, but any gate or server that CA certified would verify too: "+
		"compare the identity with the gate's console (the \"device identity\" line) and log in with --gate-id %s; no credential was sent",
		e.Gate, e.CAFile, e.GateID, e.GateID)
}

// GateIdentity connects to the gate, verifies its certificate with caFile
// and returns the gate identity it names and its key's fingerprint,
// sending nothing else.
func GateIdentity(ctx context.Context, gateURL, caFile string) (id, fingerprint string, err error) {
	gate, err := ParseGate(gateURL)
	if err != nil {
		return "", "", err
	}
	l, err := learnGate(ctx, gate, gateTrust{CAFile: caFile})
	if err != nil {
		return "", "", err
	}
	return l.GateID, l.Fingerprint, nil
}

// learnGate completes a TLS handshake with the gate at host:port, checked
// as t says (no pin: any key), and returns what it showed; nothing is
// sent.
func learnGate(ctx context.Context, gate string, t gateTrust) (*learnedGate, error) {
	var l learnedGate
	t.Pin = ""
	cfg, err := tlsConfig(wire.ALPNLogin, t, nil, &l)
	if err != nil {
		return nil, err
	}
	c, err := dialTLS(ctx, gate, cfg)
	if err != nil {
		return nil, err
	}
	c.Close()
	return &l, nil
}
