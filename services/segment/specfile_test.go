package segment_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/services/segment"
	"github.com/otgate/otgate/services/segment/ruleset"
)

func spec() *ruleset.Spec {
	return &ruleset.Spec{
		BaselineSpec: ruleset.BaselineSpec{Uplink: "eth0", Downlinks: []string{"eth1"}, ListenPorts: []uint16{443},
			DHCPClient: true, Proxy: ruleset.ProxyIdentity{UID: 990, Mark: 7}},
		Assets: []ruleset.Asset{{Name: "plc-1", Zone: "a", Mode: ruleset.ModeEnforce, Address: "10.0.0.5", TCPPorts: []uint16{502}}},
		Exceptions: []ruleset.Exception{{ID: "x", From: "10.0.0.5", To: "10.0.0.6", Protocol: "tcp", Port: 502,
			Owner: "ops", Expires: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}},
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
