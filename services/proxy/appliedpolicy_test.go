package proxy

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/site"
)

// The appliance's loader reads the compiled policy `otgate site apply`
// stores, decides with its grants, and refuses a missing or corrupt file
// with an error naming it (a reload then keeps the old policy).
func TestAppliedPolicyLoader(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, site.AppliedFile)
	load := AppliedPolicyLoader(path)
	if _, err := load(); !errors.Is(err, site.ErrNoPolicy) {
		t.Fatalf("no policy yet: %v, want ErrNoPolicy", err)
	}
	src := []byte(strings.Replace(policySite, "WRITE", "5-6", 1))
	s, err := site.Parse("lab.yaml", src, site.Options{})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := site.Compile(s, "lab.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	if err := site.Store(dir, doc); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("applied policy mode %v, want 0640 (the proxy's group reads it)", st.Mode().Perm())
	}
	p, err := load()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.Source, "lab.yaml") {
		t.Errorf("source %q does not name the site file", p.Source)
	}
	d := p.Decider.Decide(DecisionRequest{User: "alice", Asset: "plc-1", Protocol: "modbus", Source: netip.MustParseAddr("192.0.2.7"), Time: time.Now()})
	if !d.Allow || d.Rule != "engineer-plc" || d.Modbus == nil {
		t.Fatalf("alice on plc-1: %+v, want allowed by engineer-plc with Modbus rules", d)
	}
	if d := p.Decider.Decide(DecisionRequest{User: "mallory", Asset: "plc-1", Protocol: "modbus", Time: time.Now()}); d.Allow {
		t.Fatalf("unknown user allowed: %+v", d)
	}
	doc[len(doc)-1] ^= 0x01
	if err := os.WriteFile(path, doc, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := load(); !errors.Is(err, site.ErrCorruptPolicy) || !strings.Contains(err.Error(), path) {
		t.Fatalf("corrupt policy: %v, want ErrCorruptPolicy naming %s", err, path)
	}
}
