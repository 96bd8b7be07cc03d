package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otgate/otgate/site"
)

const demoSite = "../../site/testdata/example-site.yaml"

func TestSiteApplyCheckAndIfMissing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "policy")
	var out bytes.Buffer
	if err := siteCommand([]string{"check", demoSite}, &out); err != nil || !strings.Contains(out.String(), "is valid: 1 zones, 2 assets, 0 exceptions") {
		t.Fatalf("check: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := siteCommand([]string{"apply", "-dir", dir, demoSite}, &out); err != nil || !strings.Contains(out.String(), "site: applied demo-plant from") {
		t.Fatalf("apply: %v\n%s", err, out.String())
	}
	path := filepath.Join(dir, site.AppliedFile)
	first, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := site.LoadApplied(path)
	if err != nil || a.Site.Name != "demo-plant" {
		t.Fatalf("applied: %+v, %v", a, err)
	}

	// A compiled copy applies to the same bytes (what the image's default
	// policy row does on a first boot).
	compiled := filepath.Join(t.TempDir(), "site.cbor")
	if err := os.WriteFile(compiled, first, 0o644); err != nil {
		t.Fatal(err)
	}
	dir2 := filepath.Join(t.TempDir(), "policy")
	out.Reset()
	if err := siteCommand([]string{"apply", "-if-missing", "-dir", dir2, compiled}, &out); err != nil {
		t.Fatalf("apply compiled: %v\n%s", err, out.String())
	}
	if b, _ := os.ReadFile(filepath.Join(dir2, site.AppliedFile)); !bytes.Equal(b, first) {
		t.Fatal("the compiled copy stored different bytes")
	}

	// -if-missing leaves a present policy alone, and a corrupt one too.
	other := filepath.Join(t.TempDir(), "other.yaml")
	src, _ := os.ReadFile(demoSite)
	os.WriteFile(other, bytes.Replace(src, []byte("site: demo-plant"), []byte("site: other-plant"), 1), 0o644)
	out.Reset()
	if err := siteCommand([]string{"apply", "-if-missing", "-dir", dir, other}, &out); err != nil || !strings.Contains(out.String(), "nothing done") {
		t.Fatalf("apply -if-missing: %v\n%s", err, out.String())
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, first) {
		t.Fatal("-if-missing replaced the applied policy")
	}
	os.WriteFile(path, []byte("garbage"), 0o600)
	out.Reset()
	if err := siteCommand([]string{"apply", "-if-missing", "-dir", dir, other}, &out); err != nil || !strings.Contains(out.String(), "NOT replaced") {
		t.Fatalf("apply -if-missing over a corrupt policy: %v\n%s", err, out.String())
	}
	if b, _ := os.ReadFile(path); string(b) != "garbage" {
		t.Fatal("a corrupt policy was replaced by a default")
	}
}

// A bad site file names file, line and field, and changes nothing.
func TestSiteApplyBadFileChangesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "policy")
	if err := siteCommand([]string{"apply", "-dir", dir, demoSite}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, site.AppliedFile))
	src, _ := os.ReadFile(demoSite)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, bytes.Replace(src, []byte("address: 10.77.0.20"), []byte("address: 10.99.0.20"), 1), 0o644)
	err := siteCommand([]string{"apply", "-dir", dir, bad}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "bad.yaml:18: assets[0].address") || !strings.Contains(err.Error(), "nothing applied") {
		t.Fatalf("apply bad file: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, site.AppliedFile)); !bytes.Equal(before, after) {
		t.Fatal("a bad file changed the applied policy")
	}
	bogus := filepath.Join(t.TempDir(), "bogus.cbor")
	os.WriteFile(bogus, []byte("nope"), 0o644)
	if err := siteCommand([]string{"apply", "-dir", dir, bogus}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "corrupt applied policy") {
		t.Fatalf("apply bogus compiled file: %v", err)
	}
	for _, args := range [][]string{{}, {"apply"}, {"frobnicate", "x"}} {
		if err := siteCommand(args, &bytes.Buffer{}); err == nil {
			t.Errorf("siteCommand(%q): no error", args)
		}
	}
}
