package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/site"
)

const exampleSite = "../../site/testdata/example-site.yaml"

func TestExplainPair(t *testing.T) {
	var out bytes.Buffer
	if err := runExplain([]string{"alice", "plc-tank", "--at", "2026-12-02T09:00:00+01:00", "--site", exampleSite}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"alice -> plc-tank at 2026-12-02T09:00:00+01:00",
		"modbus: ALLOW by engineer-day, until 2026-12-02T22:00:00+01:00, sessions at most 8h0m0s",
		"engineer-day (allow): applies now",
		"    modbus rules (a request is judged by the line listing its unit):\n      units 1: functions [read-write]; holding-registers read 0-99 write 50-55\n",
		"vendor-maintenance (allow): does not match\n    subjects: alice is not named and has none of its roles (roles vendor)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestExplainWhoCanReachFromApplied(t *testing.T) {
	src, err := os.ReadFile(exampleSite)
	if err != nil {
		t.Fatal(err)
	}
	s, err := site.Parse("example-site.yaml", src, site.Options{Now: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := site.Compile(s, "example-site.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := site.Store(dir, doc); err != nil {
		t.Fatal(err)
	}
	applied := filepath.Join(dir, site.AppliedFile)
	var out bytes.Buffer
	// Flags first, the asset last: the compiled policy gives the same answer.
	if err := runExplain([]string{"--applied", applied, "--at", "2026-12-05T09:00:00+01:00", "plc-tank"}, &out); err != nil {
		t.Fatal(err)
	}
	want := "who can reach plc-tank at 2026-12-05T09:00:00+01:00:\n  bob  modbus  grant vendor-maintenance  until 2026-12-05T12:00:00+01:00  only from 192.0.2.0/24\n"
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
	out.Reset()
	if err := runExplain([]string{"--applied", applied, "--at", "2026-12-05T09:00:00+01:00", "--json", "hmi-1"}, &out); err != nil {
		t.Fatal(err)
	}
	var reach []struct{ User, Protocol, Rule string }
	if err := json.Unmarshal(out.Bytes(), &reach); err != nil || len(reach) != 2 || reach[0].User != "carol" {
		t.Errorf("json: %v %s", err, out.String())
	}
}

func TestExplainErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{nil, "usage: otgate explain"},
		{[]string{"a", "b", "c", "--site", exampleSite}, "usage: otgate explain"},
		{[]string{"alice", "plc-tank", "--at", "tomorrow", "--site", exampleSite}, `--at "tomorrow": want RFC 3339`},
		{[]string{"mallory", "plc-tank", "--site", exampleSite}, `no user "mallory" in site "demo-plant" (known: alice, bob, carol)`},
		{[]string{"plc-9", "--site", exampleSite}, `no asset "plc-9"`},
		{[]string{"plc-tank", "--applied", filepath.Join(t.TempDir(), "none.cbor")}, "no applied policy (give a site file with --site)"},
		{[]string{"plc-tank", "--site", "nonexistent.yaml"}, "no such file"},
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	src, _ := os.ReadFile(exampleSite)
	os.WriteFile(bad, []byte(strings.Replace(string(src), "roles: [engineer]\n    targets", "roles: [engineers]\n    targets", 1)), 0o600)
	cases = append(cases, struct {
		args []string
		want string
	}{[]string{"plc-tank", "--site", bad}, `bad.yaml:61: grants[0].subjects.roles[0]: unknown role "engineers"`})
	for _, c := range cases {
		err := runExplain(c.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("explain %q: error %v, want it to contain %q", c.args, err, c.want)
		}
	}
}

// A user bound to source networks: the pair's ALLOW holds only from them
// (Decide denies with source-network from anywhere else), and says so.
func TestExplainPairSourceNetworks(t *testing.T) {
	var out bytes.Buffer
	if err := runExplain([]string{"bob", "plc-tank", "--at", "2026-12-05T09:00:00+01:00", "--site", exampleSite}, &out); err != nil {
		t.Fatal(err)
	}
	want := "  modbus: ALLOW by vendor-maintenance, until 2026-12-05T12:00:00+01:00, sessions at most 4h0m0s, only from 192.0.2.0/24\n"
	if !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, out.String())
	}
	out.Reset()
	if err := runExplain([]string{"alice", "plc-tank", "--at", "2026-12-02T09:00:00+01:00", "--site", exampleSite}, &out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "only from") {
		t.Errorf("alice has no source networks:\n%s", out.String())
	}
}

// A gateway grant's per-unit blocks: explain shows each block, named as
// its deny reasons and records name it.
func TestExplainModbusBlocks(t *testing.T) {
	var out bytes.Buffer
	if err := runExplain([]string{"alice", "rtu-gw", "--at", "2026-12-02T09:00:00+01:00", "--site", "../../site/testdata/gateway-site.yaml"}, &out); err != nil {
		t.Fatal(err)
	}
	want := `  modbus: ALLOW by plc-gw-rw, no scheduled end
    grant "plc-gw-rw" allows alice (role engineer) modbus on rtu-gw (names rtu-gw), at any time
    modbus rules (a request is judged by the line listing its unit):
      plc-gw-rw units 1: functions [read-write]; holding-registers read 0-99 write 50-55; limit holding-registers 52: 0..100
      plc-gw-rw units 2: functions [read-only]; input-registers read 0-9
      plc-gw-rw units 3: functions [diagnostics]
`
	if !strings.Contains(out.String(), want) {
		t.Errorf("output lacks\n%s\ngot:\n%s", want, out.String())
	}
}
