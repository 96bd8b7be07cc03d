package site

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"
)

// testCert makes a certificate (self-signed) valid from nb to na, a CA
// or not, and returns it in PEM.
func testCert(t *testing.T, cn string, ca bool, nb, na time.Time, usage x509.KeyUsage) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: nb, NotAfter: na, BasicConstraintsValid: true, IsCA: ca, KeyUsage: usage,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// block indents a PEM text as the body of a "ca: |" block at 6 spaces.
func block(pemText string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(pemText, "\n"), "\n") {
		b.WriteString("      " + l + "\n")
	}
	return b.String()
}

// The uplink's nts section: servers in canonical host:port form (4460
// by default), the CA kept as DER, in either mode; a DHCP uplink with it
// alone is still DHCP; it round-trips through the compiled policy, and a
// site without it compiles exactly as before the section existed.
func TestParseUplinkNTS(t *testing.T) {
	ca := testCert(t, "Plant Time CA", true, now.Add(-time.Hour), now.AddDate(5, 0, 0), x509.KeyUsageCertSign)
	ca2 := testCert(t, "Plant Time CA 2", true, now.Add(-time.Hour), now.AddDate(5, 0, 0), 0)
	src := withUplink(t, "  mode: dhcp\n  nts:\n    servers: [Time.Plant.Example., 192.168.10.1:4461, 192.168.10.2]\n    ca: |\n"+block(ca)+block(ca2))
	s, err := Parse("plant.yaml", []byte(src), Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	u := s.UplinkSettings()
	want := []string{"time.plant.example:4460", "192.168.10.1:4461", "192.168.10.2:4460"}
	if u.NTS == nil || !slices.Equal(u.NTS.Servers, want) || len(u.NTS.CA) != 2 || len(u.NTP) != 0 {
		t.Fatalf("uplink %+v", u)
	}
	if u.IsStatic() || !u.Equal(Uplink{}) || u.String() != "dhcp" {
		t.Errorf("a dhcp uplink with nts reads as %s, equal to plain dhcp %v", u, u.Equal(Uplink{}))
	}
	if _, certs, err := u.NTS.CAPool(); err != nil || len(certs) != 2 || certs[0].Subject.CommonName != "Plant Time CA" {
		t.Errorf("CAPool: %v, %d certificates", err, len(certs))
	}
	doc, err := Compile(s, "plant.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(doc)
	if err != nil {
		t.Fatal(err)
	}
	if b := back.Site.UplinkSettings(); b.NTS == nil || !slices.Equal(b.NTS.Servers, want) || !bytes.Equal(b.NTS.CA[1], u.NTS.CA[1]) {
		t.Errorf("round trip: %+v", b.NTS)
	}
	if again, _ := Compile(&back.Site, "plant.yaml", []byte(src)); !bytes.Equal(doc, again) {
		t.Error("decode + compile of an uplink with nts does not reproduce the document")
	}

	// Without nts, the compiled uplink is what it was before the field
	// existed: the new key is simply absent.
	plain, err := Parse("plant.yaml", []byte(withUplink(t, "  mode: dhcp\n  ntp: [192.168.10.1]\n")), Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	pdoc, err := Compile(plain, "plant.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	pback, err := Decode(pdoc)
	if err != nil {
		t.Fatal(err)
	}
	if pback.Site.Uplink == nil || pback.Site.Uplink.NTS != nil {
		t.Errorf("uplink without nts decodes as %+v", pback.Site.Uplink)
	}
}

// Every bad nts entry is an error naming file, line and field, and the
// file is refused as a whole.
func TestParseUplinkNTSErrors(t *testing.T) {
	ca := testCert(t, "Plant Time CA", true, now.Add(-time.Hour), now.AddDate(5, 0, 0), x509.KeyUsageCertSign)
	leaf := testCert(t, "time.plant.example", false, now.Add(-time.Hour), now.AddDate(1, 0, 0), x509.KeyUsageDigitalSignature)
	expired := testCert(t, "Old CA", true, now.AddDate(-3, 0, 0), now.AddDate(-1, 0, 0), x509.KeyUsageCertSign)
	future := testCert(t, "Future CA", true, now.AddDate(1, 0, 0), now.AddDate(3, 0, 0), x509.KeyUsageCertSign)
	noSign := testCert(t, "Signless CA", true, now.Add(-time.Hour), now.AddDate(3, 0, 0), x509.KeyUsageDigitalSignature)
	good := "    ca: |\n" + block(ca)
	// The uplink section starts on line 83; "nts:" on 84, servers on 85,
	// "ca: |" on 86 and the CA's BEGIN line on 87.
	cases := []struct {
		name, body string
		want       []string
	}{
		{"servers", "    servers:\n      - time.plant.example:0\n      - time.plant.example:99999\n      - 127.0.0.1:4460\n      - \"[2001:db8::1]:4460\"\n      - 192.168.10.1\n      - 192.168.10.1:4460\n      - bad_name\n      - host:port\n" + good,
			[]string{`plant.yaml:86: uplink.nts.servers[0]: bad NTS-KE server "time.plant.example:0" (want host or host:port`,
				`plant.yaml:87: uplink.nts.servers[1]: bad NTS-KE server "time.plant.example:99999"`,
				`plant.yaml:88: uplink.nts.servers[2]: 127.0.0.1 is not a unicast address a time server can have`,
				`plant.yaml:89: uplink.nts.servers[3]: "2001:db8::1" is not an IPv4 address (the uplink is IPv4)`,
				`plant.yaml:91: uplink.nts.servers[5]: duplicate NTS-KE server 192.168.10.1:4460 (also uplink.nts.servers[4])`,
				`plant.yaml:92: uplink.nts.servers[6]: bad NTS-KE server "bad_name" (want an IPv4 address or a DNS name, optionally :port)`,
				`plant.yaml:93: uplink.nts.servers[7]: bad NTS-KE server "host:port"`}},
		{"too many", "    servers: [10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4, 10.0.0.5, 10.0.0.6, 10.0.0.7, 10.0.0.8, 10.0.0.9]\n" + good,
			[]string{`plant.yaml:85: uplink.nts.servers: 9 servers; at most 8`}},
		{"no servers", "    servers: []\n" + good,
			[]string{`plant.yaml:85: uplink.nts.servers: names no server`}},
		{"missing fields", "    ca: |\n" + block(ca),
			[]string{`plant.yaml:85: uplink.nts.servers: missing (required)`}},
		{"missing ca", "    servers: [192.168.10.1]\n",
			[]string{`plant.yaml:85: uplink.nts.ca: missing (required)`}},
		{"unknown field", "    servers: [192.168.10.1]\n    pin: abc\n" + good,
			[]string{`plant.yaml:86: uplink.nts.pin: unknown field (known: servers, ca)`}},
		{"not a CA", "    servers: [192.168.10.1]\n    ca: |\n" + block(ca) + block(leaf),
			[]string{`uplink.nts.ca: certificate 2 (CN=time.plant.example) is not a CA certificate (no basicConstraints CA:TRUE)`}},
		{"garbage", "    servers: [192.168.10.1]\n    ca: |\n      hello\n" + block(ca),
			[]string{`plant.yaml:87: uplink.nts.ca: text before certificate 1 is not PEM`}},
		{"not PEM", "    servers: [192.168.10.1]\n    ca: not a certificate\n",
			[]string{`plant.yaml:86: uplink.nts.ca: not PEM (want -----BEGIN CERTIFICATE-----`}},
		{"broken PEM", "    servers: [192.168.10.1]\n    ca: |\n" + block(ca[:len(ca)-30]),
			[]string{`plant.yaml:87: uplink.nts.ca: certificate 1: bad PEM block`}},
		{"bad DER", "    servers: [192.168.10.1]\n    ca: |\n      -----BEGIN CERTIFICATE-----\n      AAAA\n      -----END CERTIFICATE-----\n",
			[]string{`plant.yaml:87: uplink.nts.ca: certificate 1: x509: `}},
		{"a key", "    servers: [192.168.10.1]\n    ca: |\n      -----BEGIN PRIVATE KEY-----\n      AAAA\n      -----END PRIVATE KEY-----\n",
			[]string{`plant.yaml:87: uplink.nts.ca: certificate 1: a PEM "PRIVATE KEY" block, not a CERTIFICATE`}},
		{"duplicate", "    servers: [192.168.10.1]\n    ca: |\n" + block(ca) + block(ca),
			[]string{`uplink.nts.ca: certificate 2 (CN=Plant Time CA) is certificate 1 again`}},
		{"no sign", "    servers: [192.168.10.1]\n    ca: |\n" + block(noSign),
			[]string{`plant.yaml:87: uplink.nts.ca: certificate 1 (CN=Signless CA) may not sign certificates`}},
		{"expired", "    servers: [192.168.10.1]\n    ca: |\n" + block(expired),
			[]string{`plant.yaml:86: uplink.nts.ca: certificate 1 (CN=Old CA) expired at 2025-12-01T00:00:00Z (now 2026-12-01T00:00:00Z)`}},
		{"not yet valid", "    servers: [192.168.10.1]\n    ca: |\n" + block(future),
			[]string{`plant.yaml:86: uplink.nts.ca: certificate 1 (CN=Future CA) is not valid before 2027-12-01T00:00:00Z`}},
		{"OT side", "    servers: [10.10.1.50:4460]\n" + good,
			[]string{`plant.yaml:85: uplink.nts.servers[0]: NTP server 10.10.1.50 is in zone "cell-1" subnet 10.10.1.0/24`}},
		{"not a mapping", "    - 192.168.10.1\n",
			[]string{`plant.yaml:85: uplink.nts: want a mapping, got a list`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := withUplink(t, "  mode: dhcp\n  nts:\n"+tc.body)
			s, err := Parse("plant.yaml", []byte(src), Options{Now: now})
			if err == nil {
				t.Fatalf("Parse accepted a bad nts section: %+v", s.Uplink)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not contain\n  %s\ngot:\n  %s", w, strings.ReplaceAll(msg, "\n", "\n  "))
				}
			}
		})
	}

	// ntp beside nts would never be used: an error at uplink.ntp.
	_, err := Parse("plant.yaml", []byte(withUplink(t, "  mode: static\n  address: 192.168.10.5/24\n  ntp: [192.168.10.1]\n  nts:\n    servers: [time.plant.example]\n"+good)), Options{Now: now})
	for _, w := range []string{
		`plant.yaml:85: uplink.ntp: not used when uplink.nts names servers`,
		`uplink.nts.servers[0]: NTP server time.plant.example is a DNS name, but the static uplink has no dns servers`,
	} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("ntp and nts: %v; want %s", err, w)
		}
	}
}
