package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/services/overlay/alloc"
)

// endpointMap is a fixed overlay endpoint table (the listener test runs on
// loopback, where the lab has no overlay interface; OverlayTable is tested
// on its own against the allocator's real file below).
type endpointMap map[netip.Addr]string

func (m endpointMap) Asset(a netip.Addr) (string, bool, error) {
	s, ok := m[a]
	return s, ok, nil
}

func (m endpointMap) Endpoint(asset string) (netip.Addr, bool, error) {
	for a, s := range m {
		if s == asset {
			return a, true, nil
		}
	}
	return netip.Addr{}, false, nil
}

// brokenTable is a table that cannot be read.
type brokenTable struct{}

func (brokenTable) Asset(netip.Addr) (string, bool, error) {
	return "", false, errors.New("alloc: state file damaged")
}

func (brokenTable) Endpoint(string) (netip.Addr, bool, error) {
	return netip.Addr{}, false, errors.New("alloc: state file damaged")
}

// serveModbusSecurity starts g's Modbus/TCP Security listener on a
// loopback address with eps and returns its port.
func serveModbusSecurity(t *testing.T, g *gate, eps Endpoints) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.srv.ServeModbusSecurity(ln, eps)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// runPymodbusTLS is runPymodbus over Modbus/TCP Security with the
// profile's certificate and key, trusting the gate's certificate (ca).
func runPymodbusTLS(t *testing.T, port string, profile, ca string, ops string) ([]pymodbusResult, string, error) {
	t.Helper()
	out, err := exec.Command("/usr/bin/python3", "../../plant/testdata/modbus_client.py", "127.0.0.1", port, "1", ops,
		filepath.Join(profile, client.CertFile), filepath.Join(profile, client.KeyFile), ca).CombinedOutput()
	if err != nil {
		return nil, string(out), err
	}
	return parsePymodbus(t, out), string(out), nil
}

// TestModbusSecurityEndpoint: a Modbus client with no otgate in it
// (pymodbus's ModbusTlsClient) reaches plc-1 through its overlay
// endpoint with Modbus/TCP Security, with the certificate and key
// `otgate login` stored: the session is decided by the site file's grant,
// recorded, and inspected as a tunnel's (allowed operations unchanged,
// denied ones answered with the device's exception and never forwarded,
// the transcript decoded). Refused, each with its reason recorded: no
// client certificate, a user without a grant, an address that is no
// asset's endpoint, an endpoint table that cannot be read.
func TestModbusSecurityEndpoint(t *testing.T) {
	if _, err := exec.LookPath("/usr/bin/python3"); err != nil {
		t.Skip("/usr/bin/python3 not installed")
	}
	l := newLab(t)
	startPymodbusInPlant(t, l)
	sitePath := filepath.Join(t.TempDir(), "site.yaml")
	site := strings.Replace(deviceSite, "MODE", "enforce", 1)
	// bob may reach plc-2 only.
	site = strings.Replace(site, "users:\n  - name: alice\n", `  - name: plc-2
    zone: cell
    address: 10.99.0.6
    services:
      - protocol: modbus
users:
  - name: alice
  - name: bob
`, 1)
	site += `  - name: bob-plc-2
    subjects:
      users: [bob]
    targets:
      assets: [plc-2]
    protocols: [modbus]
    modbus:
      units: [1]
      functions: [read-only]
      holding-registers:
        read: ["0-9"]
`
	if err := os.WriteFile(sitePath, []byte(site), 0o600); err != nil {
		t.Fatal(err)
	}
	g := newGate(t, l, func(c *Config) { c.LoadPolicy = SiteFileLoader(sitePath) })
	alice := loginProfile(t, g, "alice")
	// The gate's certificate as the login checked it: what the Modbus
	// client trusts.
	ca := filepath.Join(alice, client.GateCertFile)
	if b, err := os.ReadFile(ca); err != nil || !bytes.Equal(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: g.cert.Certificate[0]})) {
		t.Fatalf("%s: %v, want the gate's certificate", ca, err)
	}
	port := serveModbusSecurity(t, g, endpointMap{netip.MustParseAddr("127.0.0.1"): "plc-1"})
	// `otgate assets` names the endpoint of each modbus asset.
	cs, err := client.Open(alice)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	rsp, err := cs.Assets(ctx)
	cancel()
	if err != nil || len(rsp.Assets) != 1 || rsp.Assets[0].Name != "plc-1" || rsp.Assets[0].Endpoint != "127.0.0.1:"+port {
		t.Fatalf("alice's assets: %+v %v, want plc-1 at 127.0.0.1:%s", rsp, err, port)
	}

	res, out, err := runPymodbusTLS(t, port, alice, ca, `[["rh",0,4], ["wr",5,55], ["wr",7,1], ["rh",5,1]]`)
	if err != nil {
		t.Fatalf("pymodbus over Modbus/TCP Security: %v\n%s", err, out)
	}
	checkResults(t, res, []string{"ok [0 1 2 3]", "ok []", "exception 2", "ok [55]"})
	start := g.waitRecord("alice's session start", func(b audit.Body) bool {
		s, ok := b.(audit.SessionStart)
		return ok && s.User == "alice" && s.Asset == "plc-1"
	}).(audit.SessionStart)
	if start.Protocol != "modbus" || start.Rule != "alice-plc" || start.Source != "127.0.0.1" || start.Endpoint != "127.0.0.1:"+port {
		t.Errorf("session start %+v: want modbus, rule alice-plc, from 127.0.0.1 at endpoint 127.0.0.1:%s", start, port)
	}
	g.waitEnd(start.SessionID, EndClientClosed)
	denied := g.waitRecord("the denied write's record", func(b audit.Body) bool {
		p, ok := b.(audit.Payload)
		return ok && p.SessionID == start.SessionID && p.Decoded != nil && int(p.Decoded.Transaction) == res[2].TID
	}).(audit.Payload)
	if d := denied.Decoded; d.Verdict != "denied" || d.Function != 6 || d.Start != 7 || d.Exception != 2 {
		t.Errorf("denied write recorded as %+v", *d)
	}
	waitGateLine(t, g, "proxy: session "+start.SessionID+" of alice to plc-1/modbus via Modbus/TCP Security at 127.0.0.1:"+port+" ended: client closed")

	// No client certificate: the handshake completes (the gate checks
	// certificates itself, to record why), then the connection closes.
	tc, err := tls.Dial("tcp", "127.0.0.1:"+port, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	tc.SetDeadline(time.Now().Add(30 * time.Second))
	tc.Write([]byte{0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 1})
	if n, err := tc.Read(make([]byte, 64)); err == nil {
		t.Fatalf("a connection without a client certificate was answered (%d bytes)", n)
	}
	tc.Close()
	g.waitEvent(EventSessionRefused, "", "no client certificate")

	// bob has no grant.
	bob := loginProfile(t, g, "bob")
	if res, out, err := runPymodbusTLS(t, port, bob, ca, `[["rh",0,1]]`); err == nil && (len(res) != 1 || res[0].Error == "") {
		t.Fatalf("bob, without a grant, was answered: %s", out)
	}
	g.waitEvent(EventSessionRefused, "bob", "denied: no grant lets bob reach plc-1")

	// An address that is no asset's endpoint, and a table that cannot be
	// read: refused, nothing reaches a device.
	for _, c := range []struct {
		eps    Endpoints
		reason string
	}{
		{endpointMap{netip.MustParseAddr("100.64.0.9"): "plc-1"}, "that address is no asset's overlay endpoint"},
		{brokenTable{}, "the overlay endpoint table cannot be read: alloc: state file damaged"},
	} {
		p := serveModbusSecurity(t, g, c.eps)
		if res, out, err := runPymodbusTLS(t, p, alice, ca, `[["rh",0,1]]`); err == nil && (len(res) != 1 || res[0].Error == "") {
			t.Fatalf("%s: answered: %s", c.reason, out)
		}
		g.waitEvent(EventSessionRefused, "", c.reason)
	}
}

// loginProfile enrols user and logs in with the otgate client library
// (TOTP code from oathtool); it returns the profile directory, which holds
// the certificate and key a Modbus/TCP Security client presents.
func loginProfile(t *testing.T, g *gate, user string) string {
	t.Helper()
	secret := g.enrol(user)
	_, dir, err := g.login(user, "correct horse battery", oathtool(t, secret))
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return dir
}

// TestOverlayTable reads the overlay allocator's own file: each asset's
// endpoint, a change the allocator writes seen at the next lookup, no
// file (nothing allocated yet) as an empty table, a damaged file as an
// error (the listener then refuses: fail closed).
func TestOverlayTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "overlay", "alloc.cbor")
	tab := &OverlayTable{Path: path}
	if a, ok, err := tab.Asset(netip.MustParseAddr("100.64.0.1")); a != "" || ok || err != nil {
		t.Fatalf("no file: %q %v %v, want nothing and no error", a, ok, err)
	}
	al, err := alloc.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := alloc.Config{Prefix: netip.MustParsePrefix("100.64.0.0/16")}
	if _, err := al.Apply(cfg, []alloc.Request{{Asset: "plc-1", Zone: "cell"}, {Asset: "hmi-1", Zone: "cell"},
		{Asset: "plc-9", Zone: "cell", Pinned: netip.MustParseAddr("100.64.200.9")}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	entries, err := alloc.ReadTable(path)
	if err != nil || len(entries) != 3 {
		t.Fatalf("allocator table: %v %v", entries, err)
	}
	// Group-readable: on the appliance the proxy reads it as a member of
	// the directory's group.
	for _, p := range []string{path, alloc.MirrorPath(path)} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o640 {
			t.Fatalf("%s: %v %v, want mode 0640", p, fi.Mode(), err)
		}
	}
	lookup := func(addr netip.Addr) string {
		t.Helper()
		a, ok, err := tab.Asset(addr)
		if err != nil || ok != (a != "") {
			t.Fatalf("Asset(%s) = %q %v %v", addr, a, ok, err)
		}
		return a
	}
	for _, e := range entries {
		if got := lookup(e.Addr); got != e.Asset {
			t.Errorf("endpoint %s: %q, want %q", e.Addr, got, e.Asset)
		}
		if got, ok, err := tab.Endpoint(e.Asset); got != e.Addr || !ok || err != nil {
			t.Errorf("endpoint of %s: %s %v %v, want %s", e.Asset, got, ok, err, e.Addr)
		}
	}
	if got := lookup(netip.MustParseAddr("100.64.200.9")); got != "plc-9" {
		t.Errorf("pinned endpoint: %q, want plc-9", got)
	}
	var hmi netip.Addr
	for _, e := range entries {
		if e.Asset == "hmi-1" {
			hmi = e.Addr
		}
	}
	// hmi-1 leaves the site: its address is quarantined, no endpoint.
	if _, err := al.Apply(cfg, []alloc.Request{{Asset: "plc-1", Zone: "cell"},
		{Asset: "plc-9", Zone: "cell", Pinned: netip.MustParseAddr("100.64.200.9")}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := lookup(hmi); got != "" {
		t.Errorf("released endpoint %s still names %q", hmi, got)
	}
	if got, ok, err := tab.Endpoint("hmi-1"); ok || err != nil {
		t.Errorf("hmi-1 left, its endpoint is still %s (%v)", got, err)
	}
	if got := lookup(netip.MustParseAddr("100.64.200.9")); got != "plc-9" {
		t.Errorf("after the change, the pinned endpoint: %q", got)
	}
	// Damaged, both copies: an error, never a stale or empty answer.
	for _, p := range []string{path, alloc.MirrorPath(path)} {
		if err := os.WriteFile(p, []byte("not a table, and longer than before: xxxxxxxxxxxxxxxxxxxxxxx"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if a, ok, err := tab.Asset(netip.MustParseAddr("100.64.200.9")); err == nil || ok {
		t.Fatalf("damaged table: %q %v %v, want an error", a, ok, err)
	}
}
