package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/otgate/otgate/services/identity/api"
)

// The identity service's own name cannot be given to a caller: its
// secrets hold the workload CA's key, which the caller could then unseal
// or replace.
func TestAllowListRefusesTheIdentityName(t *testing.T) {
	for _, s := range []string{"0=identity", "0=admin,101=identity"} {
		_, err := ParseAllow(s)
		if err == nil || !strings.Contains(err.Error(), `"identity" is the identity service's own`) || !strings.Contains(err.Error(), s) {
			t.Errorf("ParseAllow(%q): %v, want a refusal naming the entry and the reserved name", s, err)
		}
	}
	if m, err := ParseAllow("0=admin,101=proxy,102=identity-proxy"); err != nil || m[102] != "identity-proxy" {
		t.Errorf("a name that only starts with identity: %v %v", m, err)
	}
	sock := t.TempDir() + "/identity.sock"
	_, err := Listen(nil, ServerConfig{Socket: sock, GID: -1, Allow: map[uint32]string{0: "admin", 101: "identity"}})
	if err == nil || !strings.Contains(err.Error(), "uid 101") || !strings.Contains(err.Error(), `"identity" is the identity service's own`) {
		t.Fatalf("Listen with uid 101 as identity: %v", err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("a refused allow-list left a socket: %v", err)
	}
}

// rawCall sends one frame of raw bytes (length prefix len(b), or length
// when not 0) and reads the answer; with cut, the frame's bytes are the
// last the client sends.
func rawCall(t *testing.T, c net.Conn, b []byte, length uint32, cut bool) *api.Response {
	t.Helper()
	if length == 0 {
		length = uint32(len(b))
	}
	frame := binary.BigEndian.AppendUint32(nil, length)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(append(frame, b...)); err != nil {
		t.Fatal(err)
	}
	if cut {
		if err := c.(*net.UnixConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
	}
	var rsp api.Response
	if err := api.ReadMessage(c, &rsp); err != nil {
		t.Fatalf("no answer: %v", err)
	}
	return &rsp
}

// Every malformed request gets an answer saying what is wrong: a frame
// that is not CBOR, one with a field the protocol does not have, a frame
// over the limit, an unknown operation, a workload certificate lifetime
// out of range (a huge one used to wrap around into the range).
// TestPCRFlagRefusesResettablePCRs: -pcrs naming PCR 16 or 23 (which
// anyone on the device can reset and extend to the sealed value) is
// refused at the flag, naming it, not only when an identity is created
// (an existing identity ignored it without a word).
func TestPCRFlagRefusesResettablePCRs(t *testing.T) {
	for _, v := range []string{"16", "0,23", "7, 16"} {
		f := Flags{PCRs: v, DevMode: true}
		_, err := f.Config(false, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "-pcrs") || !strings.Contains(err.Error(), "resettable") {
			t.Errorf("-pcrs %s: %v, want a refusal naming -pcrs and the resettable PCR", v, err)
		}
	}
	if pcrs, err := ParsePCRs("0,2,7"); err != nil || len(pcrs) != 3 {
		t.Errorf("ParsePCRs(0,2,7) = %v, %v", pcrs, err)
	}
}

func TestSocketAnswersMalformedRequests(t *testing.T) {
	_, opener := startTPM(t)
	id, err := Open(testConfig(t, opener))
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()
	sock := serve(t, id, -1, map[uint32]string{uint32(os.Getuid()): "proxy"})
	dial := func() net.Conn {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	enc := func(v any) []byte {
		b, err := cbor.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name   string
		b      []byte
		length uint32
		want   string
	}{
		{"not CBOR", []byte{0xff, 0xff, 0xff}, 0, "decode *api.Request"},
		{"unknown field", enc(map[int]any{1: "status", 99: 1}), 0, "unknown field"},
		{"over the limit", nil, api.MaxMessage + 1, "exceeds the limit of 1048576"},
		{"cut short", []byte{0xa1}, 10, "cut short"},
	} {
		rsp := rawCall(t, dial(), tc.b, tc.length, tc.name == "cut short")
		if rsp.Code != api.CodeBadRequest || !strings.Contains(rsp.Error, tc.want) || !strings.Contains(rsp.Error, "proxy (uid") {
			t.Errorf("%s: got %q %q, want bad-request naming the caller and %q", tc.name, rsp.Code, rsp.Error, tc.want)
		}
	}

	c := dial()
	rsp := rawCall(t, c, enc(&api.Request{Op: "frobnicate"}), 0, false)
	if rsp.Code != api.CodeBadRequest || !strings.Contains(rsp.Error, `unknown operation "frobnicate"`) {
		t.Errorf("unknown op: %q %q", rsp.Code, rsp.Error)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	// 28823037615171178 s times 1e9 wraps to 3.6 s in an int64 of ns.
	for _, ttl := range []int64{28823037615171178, 3601, 0, -1} {
		rsp := rawCall(t, c, enc(&api.Request{Op: api.OpWorkloadCert, CSR: csr, TTLSeconds: ttl}), 0, false)
		if rsp.Code != api.CodeBadRequest || !strings.Contains(rsp.Error, "lifetime") || len(rsp.Certs) != 0 {
			t.Errorf("lifetime %ds: got %q %q and %d certificates, want bad-request", ttl, rsp.Code, rsp.Error, len(rsp.Certs))
		}
	}
	// The connection still serves after refusals that were whole requests.
	rsp = rawCall(t, c, enc(&api.Request{Op: api.OpWorkloadCert, CSR: csr, TTLSeconds: 3600}), 0, false)
	if rsp.Code != "" || len(rsp.Certs) != 2 {
		t.Fatalf("lifetime 3600s: %q %q", rsp.Code, rsp.Error)
	}
	leaf, err := x509.ParseCertificate(rsp.Certs[0])
	if err != nil {
		t.Fatal(err)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d != time.Hour {
		t.Errorf("lifetime 3600s: certificate valid for %v", d)
	}
	if len(leaf.URIs) != 1 || !strings.HasSuffix(leaf.URIs[0].String(), "/service/proxy") {
		t.Errorf("workload certificate names %v, want the caller's service proxy", leaf.URIs)
	}
}
