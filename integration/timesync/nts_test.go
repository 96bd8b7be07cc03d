package timesync

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/image"
	"github.com/otgate/otgate/integration/internal/gatetest"
	"github.com/otgate/otgate/qemu"
	"github.com/otgate/otgate/qemu/lab"
)

// The story of TestGateStepsAWrongClock, with NTS: the site file names
// chronyd on the uplink side as an NTS server (uplink.nts) and carries
// the CA that signed its certificate; the DHCP lease still names it as a
// plain NTP server (option 42), which the gate must not use. The RTC
// says 2020, before the certificates' validity: the first sync of the
// boot verifies the chain and the name without the validity times, and
// the gate, set forward from 2020 to the build floor at start (no clock
// file yet), steps its clock to this host's through an NTS key exchange
// (TCP 4460) and an authenticated query.
func TestGateSyncsOverNTS(t *testing.T) {
	b, img := gatetest.Variant(t, "qemu-x86_64", "timesync", image.WithTestServices(true))
	for _, bin := range []string{"dnsmasq", "mkfs.ext4", "chronyd"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (make test installs it)", bin)
		}
	}
	ctx := gatetest.Context(t, 8*time.Minute)
	l, err := lab.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	gatetest.StartDHCPServer(t, l, "--dhcp-option=option:ntp-server,"+ntpServer)

	dir := t.TempDir()
	caPEM, certFile, keyFile := ntsCertificates(t, dir, ntpServer)
	startChronyd(t, ctx, l, "ntsserverkey "+keyFile, "ntsservercert "+certFile, "ntsport 4460",
		"ntsdumpdir "+dir, "ntsprocesses 0")

	src, err := os.ReadFile(filepath.Join("testdata", "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var nts strings.Builder
	nts.WriteString("  nts:\n    servers: [" + ntpServer + "]\n    ca: |\n")
	for _, line := range strings.Split(strings.TrimRight(caPEM, "\n"), "\n") {
		nts.WriteString("      " + line + "\n")
	}
	siteFile := filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(siteFile, append(src, nts.String()...), 0o644); err != nil {
		t.Fatal(err)
	}

	state := t.TempDir()
	disk := gatetest.PermWithPolicy(t, state, siteFile)
	vm := qemu.StartT(t, b, img,
		qemu.WithLab(l),
		qemu.WithDisk(disk, 0),
		qemu.WithTPM(filepath.Join(state, "tpm")),
		qemu.WithQEMUArgs("-rtc", "base=2020-01-01T00:00:00"),
		qemu.WithTimeout(6*time.Minute),
	)
	gatetest.MustSee(t, vm, regexp.MustCompile(`^timesync: .*timesync: starting: clock 2020-01-01T`))
	srv := regexp.QuoteMeta(net.JoinHostPort(ntpServer, "4460"))
	gatetest.MustSee(t, vm, regexp.MustCompile(`^timesync: .*timesync: servers from the site file's uplink\.nts \(NTS-authenticated; plain NTP is not used\): `+srv+`$`))
	t.Logf("key exchange: %s", gatetest.MustSee(t, vm, regexp.MustCompile(`timesync: nts `+srv+`: key exchange done \(certificate verified against the site CA; NTP server `)))
	stepRE := regexp.MustCompile(`timesync: stepped the clock by \+(\d+)\.\d+s: (\S+) -> (\S+) \(first sync of this boot; servers nts ` + srv + ` \+\d+\.\d+s \(stratum 3, `)
	line := gatetest.MustSee(t, vm, stepRE)
	seen := time.Now()
	after, err := time.Parse("2006-01-02T15:04:05.000Z", stepRE.FindStringSubmatch(line)[3])
	if err != nil {
		t.Fatalf("step line %q: %v", line, err)
	}
	if d := seen.Sub(after); d < -time.Second || d > time.Second {
		t.Errorf("the gate's clock after the step: %s, this host's when the line arrived: %s (%s apart); want within a second",
			after.Format(time.RFC3339Nano), seen.UTC().Format(time.RFC3339Nano), d)
	}
	t.Logf("step: %s", line)
	row := gatetest.MustSee(t, vm, regexp.MustCompile(`^statusdump: timesync\s+ready\s.*synchronised: stepped by \+\d+\.\d+s at \S+ \(nts `+srv+` `))
	t.Logf("status row: %s", row)
	for _, l := range vm.Lines() {
		if strings.Contains(l, "timesync: no sync") || strings.Contains(l, "servers from the DHCP lease") {
			t.Logf("console: %s", l)
		}
		if strings.Contains(l, "timesync: REFUSED") || strings.Contains(l, "init: timesync exited") ||
			strings.Contains(l, "servers from the DHCP lease") {
			t.Errorf("console: %s", l)
		}
	}
	gatetest.PowerOff(t, vm)
}

// ntsCertificates makes a CA and, signed by it, a certificate for the
// NTS server at ip (IP subjectAltName), both valid from an hour ago (the
// gate boots in 2020, before that); it writes the server's key and
// certificate to dir and returns the CA's PEM and their paths.
func ntsCertificates(t *testing.T, dir, ip string) (caPEM, certFile, keyFile string) {
	t.Helper()
	nb, na := time.Now().Add(-time.Hour), time.Now().AddDate(1, 0, 0)
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Lab Plant Time CA"},
		NotBefore: nb, NotAfter: na, BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ip},
		NotBefore: nb, NotAfter: na, IPAddresses: []net.IP{net.ParseIP(ip)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})), certFile, keyFile
}
