package totp

import (
	"bytes"
	"strings"
	"testing"
)

func TestURIRoundTrip(t *testing.T) {
	k := Key{Issuer: "otgate plant-1", Account: "alice", Secret: []byte("12345678901234567890"),
		Params: Params{Algorithm: SHA256, Digits: 8, Period: 60, Skew: 1}}
	u, err := k.URI()
	if err != nil {
		t.Fatal(err)
	}
	want := "otpauth://totp/otgate%20plant-1:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=otgate+plant-1&algorithm=SHA256&digits=8&period=60"
	if u != want {
		t.Errorf("URI:\n got %s\nwant %s", u, want)
	}
	back, err := ParseURI(u)
	if err != nil {
		t.Fatal(err)
	}
	if back.Issuer != k.Issuer || back.Account != k.Account || !bytes.Equal(back.Secret, k.Secret) || back.Params != k.Params {
		t.Errorf("round trip: got %+v (%x), want %+v", back, back.Secret, k)
	}
	if strings.Contains(k.String(), "GEZ") || strings.Contains(k.String(), "1234567890") {
		t.Errorf("Key.String leaks the secret: %s", k)
	}
}

func TestParseURIDefaultsAndErrors(t *testing.T) {
	k, err := ParseURI("otpauth://totp/alice?secret=jbsw%20y3dp-ehpk3pxpjbswy3dpehpk3pxp")
	if err != nil {
		t.Fatal(err)
	}
	if k.Params != DefaultParams || k.Account != "alice" || k.Issuer != "" {
		t.Errorf("defaults: %+v", k)
	}
	for _, s := range []string{
		"otpauth://hotp/alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
		"https://totp/alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
		"otpauth://totp/alice?secret=JBSWY3DP",           // too short
		"otpauth://totp/alice?secret=JBSWY3DPEHPK3PXP1!", // not base32
		"otpauth://totp/alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&digits=x",
		"otpauth://totp/alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&digits=4",
		"otpauth://totp/alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&algorithm=MD5",
		"otpauth://totp/A:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=B",
	} {
		if _, err := ParseURI(s); err == nil {
			t.Errorf("ParseURI(%q): no error", s)
		}
	}
	if _, err := (Key{Issuer: "a:b", Account: "x", Secret: make([]byte, 20), Params: DefaultParams}).URI(); err == nil {
		t.Error("issuer with ':' accepted")
	}
}

func TestSecretEncoding(t *testing.T) {
	s := []byte("12345678901234567890")
	if got := EncodeSecret(s); got != "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" {
		t.Errorf("EncodeSecret = %s", got)
	}
	for _, in := range []string{"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "gezd gnbv gy3t qojq gezd gnbv gy3t qojq", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ===="} {
		b, err := DecodeSecret(in)
		if err != nil || !bytes.Equal(b, s) {
			t.Errorf("DecodeSecret(%q) = %x, %v", in, b, err)
		}
	}
}
