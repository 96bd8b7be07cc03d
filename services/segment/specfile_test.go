package segment_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/services/segment"
	"github.com/otgate/otgate/services/segment/ruleset"
)

// specExpires is the fixture's exception expiry: within the bound of a
// spec file (MaxSpecExceptionLifetime from now), whole seconds for the
// round trip.
var specExpires = time.Now().UTC().Truncate(time.Second).Add(48 * time.Hour)

func spec() *ruleset.Spec {
	return &ruleset.Spec{
		BaselineSpec: ruleset.BaselineSpec{Uplink: "eth0", Downlinks: []string{"eth1"}, ListenPorts: []uint16{443},
			DHCPClient: true, Proxy: ruleset.ProxyIdentity{UID: 990, Mark: 7}},
		EnforceInterfaces: []string{"eth1"},
		Assets:            []ruleset.Asset{{Name: "plc-1", Zone: "a", Mode: ruleset.ModeEnforce, Address: "10.0.0.5", TCPPorts: []uint16{502}}},
		Exceptions: []ruleset.Exception{{ID: "x", From: "10.0.0.5", To: "10.0.0.6", Protocol: "tcp", Port: 502,
			Owner: "ops", Expires: specExpires}},
	}
}

func TestSpecCBORRoundTripIsDeterministic(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.cbor"), filepath.Join(dir, "b.cbor")
	for _, p := range []string{a, b} {
		if err := segment.WriteSpec(p, spec()); err != nil {
			t.Fatal(err)
		}
	}
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if !bytes.Equal(ab, bb) {
		t.Error("two encodings of the same spec differ")
	}
	got, err := segment.LoadSpec(a)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got.Exceptions {
		got.Exceptions[i].Expires = got.Exceptions[i].Expires.UTC()
	}
	if !reflect.DeepEqual(got, spec()) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, spec())
	}
}

func TestLoadSpecRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, body, want string }{
		{"x.json", `{"uplink":"eth0","downlinks":["eth1"],"proxy":{"uid":990},"colour":"red"}`, `unknown field "colour"`},
		{"y.json", `{"uplink":"eth0","downlinks":["eth1"],"proxy":{"uid":0}}`, "proxy.uid: 0 (root)"},
		{"z.cbor", "\xff\x00", "z.cbor"},
	} {
		p := filepath.Join(dir, tc.name)
		if err := os.WriteFile(p, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := segment.LoadSpec(p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadSpec(%s) = %v, want error containing %q", tc.name, err, tc.want)
		}
	}
	bad := spec()
	bad.Assets[0].Mode = "x"
	p := filepath.Join(dir, "bad.cbor")
	if err := segment.WriteSpec(p, bad); err == nil {
		t.Error("WriteSpec wrote an invalid spec")
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("invalid spec left a file: %v", err)
	}
}

// TestSpecExceptionExpiryIsBounded: an exception of a -spec file may not
// expire later than the site file allows (its default maximum exception
// lifetime, 90 days, from now). There was no bound: a spec file could
// open a flow until the year 9999. The error names the file, the
// exception and the bound; nothing is written.
func TestSpecExceptionExpiryIsBounded(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "far.json")
	far := time.Now().Add(segment.MaxSpecExceptionLifetime + 24*time.Hour).UTC().Truncate(time.Second)
	body := `{"uplink":"eth0","downlinks":["eth1"],"proxy":{"uid":990},
	  "assets":[{"name":"plc-1","zone":"a","mode":"enforce","address":"10.0.0.5","tcp_ports":[502]}],
	  "exceptions":[{"id":"vendor-1","from":"10.0.0.5","to":"10.0.0.6","protocol":"tcp","port":502,"owner":"ops","expires":"` + far.Format(time.RFC3339) + `"}]}`
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := segment.LoadSpec(p)
	want := "segment: spec " + p + `: exceptions[0] "vendor-1": expiry ` + far.Format(time.RFC3339) + " is more than the maximum exception lifetime (2160h0m0s) from now; limit: "
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("LoadSpec of an exception expiring in %s:\n got %v\nwant %q...", time.Until(far).Round(time.Hour), err, want)
	}

	near := time.Now().Add(segment.MaxSpecExceptionLifetime - 24*time.Hour).UTC().Truncate(time.Second)
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(body, far.Format(time.RFC3339), near.Format(time.RFC3339))), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := segment.LoadSpec(p); err != nil {
		t.Errorf("LoadSpec of an exception expiring a day within the bound: %v", err)
	}

	s := spec()
	s.Exceptions[0].Expires = far
	w := filepath.Join(dir, "far.cbor")
	if err := segment.WriteSpec(w, s); err == nil || !strings.Contains(err.Error(), `exceptions[0] "x": expiry`) {
		t.Errorf("WriteSpec of an exception past the bound: %v", err)
	}
	if _, err := os.Stat(w); !os.IsNotExist(err) {
		t.Errorf("refused spec left a file: %v", err)
	}
}

// TestSpecFileNamesEnforceInterfaces: a spec file with an asset in
// monitor mode must say which downlinks stay enforced; left out, every
// downlink would be open to the monitor zone (fail open), so it is
// refused, by LoadSpec and WriteSpec alike. An empty list (every
// downlink carries monitor zones alone) is kept apart from a missing one
// through a CBOR round trip. Without a monitor-mode asset the list does
// not matter and may be left out.
func TestSpecFileNamesEnforceInterfaces(t *testing.T) {
	dir := t.TempDir()
	const base = `{"uplink":"eth0","downlinks":["eth1"],"proxy":{"uid":990,"mark":7},` +
		`"assets":[{"name":"rtu-1","zone":"b","mode":"%s","address":"10.0.0.7","tcp_ports":[502]}],"exceptions":[]%s}`
	for _, tc := range []struct {
		name, mode, field, want string
		enforce                 []string
	}{
		{"missing", "monitor", ``, `enforce_interfaces: not given, and assets[0] "rtu-1" (zone "b") is in monitor mode`, nil},
		{"null", "monitor", `,"enforce_interfaces":null`, `enforce_interfaces: not given`, nil},
		{"empty", "monitor", `,"enforce_interfaces":[]`, "", []string{}},
		{"given", "monitor", `,"enforce_interfaces":["eth1"]`, "", []string{"eth1"}},
		{"enforce-only", "enforce", ``, "", nil},
	} {
		p := filepath.Join(dir, tc.name+".json")
		if err := os.WriteFile(p, []byte(fmt.Sprintf(base, tc.mode, tc.field)), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := segment.LoadSpec(p)
		if tc.want != "" {
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ruleset.ErrInvalidSpec) {
				t.Errorf("%s: LoadSpec = %v, want an invalid spec saying %q", tc.name, err, tc.want)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !reflect.DeepEqual(got.EnforceInterfaces, tc.enforce) {
			t.Errorf("%s: enforce interfaces %#v, want %#v", tc.name, got.EnforceInterfaces, tc.enforce)
		}
		// The CBOR round trip keeps nil and empty apart.
		c := filepath.Join(dir, tc.name+".cbor")
		if err := segment.WriteSpec(c, got); err != nil {
			t.Fatalf("%s: WriteSpec: %v", tc.name, err)
		}
		again, err := segment.LoadSpec(c)
		if err != nil {
			t.Fatalf("%s: LoadSpec after WriteSpec: %v", tc.name, err)
		}
		if !reflect.DeepEqual(again.EnforceInterfaces, tc.enforce) {
			t.Errorf("%s: after the CBOR round trip %#v, want %#v", tc.name, again.EnforceInterfaces, tc.enforce)
		}
	}
	bad := spec()
	bad.Assets[0].Mode = ruleset.ModeMonitor
	bad.EnforceInterfaces = nil
	if err := segment.WriteSpec(filepath.Join(dir, "open.cbor"), bad); err == nil || !strings.Contains(err.Error(), "enforce_interfaces: not given") {
		t.Errorf("WriteSpec of a monitor-mode asset without enforce_interfaces: %v", err)
	}
}
