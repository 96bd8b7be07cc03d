package site

import (
	"bytes"
	"errors"
	"github.com/fxamacker/cbor/v2"
	"os"
	"path/filepath"
	"testing"
)

func compilePlant(t *testing.T) []byte {
	t.Helper()
	src := readTestdata(t, "plant.yaml")
	s, err := Parse("plant.yaml", src, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := Compile(s, "testdata/plant.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestCompileDeterministicAndRoundTrip(t *testing.T) {
	a, b := compilePlant(t), compilePlant(t)
	if !bytes.Equal(a, b) {
		t.Fatal("two compilations of the same file differ")
	}
	applied, err := Decode(a)
	if err != nil {
		t.Fatal(err)
	}
	if applied.Source != "plant.yaml" || applied.Version != FormatVersion {
		t.Errorf("applied header = %q v%d", applied.Source, applied.Version)
	}
	again, err := Compile(&applied.Site, applied.Source, readTestdata(t, "plant.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, again) {
		t.Error("decode + compile does not reproduce the document: information lost in CBOR")
	}
	if applied.Site.Assets[2].Overlay.String() != "100.64.200.10" || !applied.Site.Exceptions[0].Expires.Equal(now.AddDate(0, 1, 14)) {
		t.Errorf("round trip lost values: %+v", applied.Site.Assets[2])
	}
}

func TestStoreAndLoadApplied(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "policy")
	if _, err := LoadApplied(filepath.Join(dir, AppliedFile)); !errors.Is(err, ErrNoPolicy) {
		t.Fatalf("missing file: err = %v, want ErrNoPolicy", err)
	}
	doc := compilePlant(t)
	if err := Store(dir, doc); err != nil {
		t.Fatal(err)
	}
	a, err := LoadApplied(filepath.Join(dir, AppliedFile))
	if err != nil {
		t.Fatal(err)
	}
	if a.Site.Name != "plant-north" {
		t.Errorf("loaded %q", a.Site.Name)
	}
	if err := Store(dir, []byte("garbage")); err == nil {
		t.Error("Store accepted a document that does not decode")
	}
	if got, _ := os.ReadFile(filepath.Join(dir, AppliedFile)); !bytes.Equal(got, doc) {
		t.Error("a refused Store changed the stored policy")
	}
}

// TestLoadAppliedCorruption flips every bit and truncates at every length:
// each must be ErrCorruptPolicy, never a successful (silently different)
// load.
func TestLoadAppliedCorruption(t *testing.T) {
	doc := compilePlant(t)
	path := filepath.Join(t.TempDir(), AppliedFile)
	check := func(what string, b []byte) {
		t.Helper()
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadApplied(path); !errors.Is(err, ErrCorruptPolicy) {
			t.Fatalf("%s: err = %v, want ErrCorruptPolicy", what, err)
		}
	}
	for i := range doc {
		for bit := 0; bit < 8; bit++ {
			b := bytes.Clone(doc)
			b[i] ^= 1 << bit
			check("flip", b)
		}
	}
	for n := 0; n < len(doc); n++ {
		check("truncate", doc[:n])
	}
	check("trailing byte", append(bytes.Clone(doc), 0))
}

// A site without an uplink section (DHCP) compiles to a document without
// the uplink key: byte for byte what builds before the section made, and
// readable by them.
func TestCompileOmitsDefaultUplink(t *testing.T) {
	var env envelope
	if err := decMode.Unmarshal(compilePlant(t), &env); err != nil {
		t.Fatal(err)
	}
	var body struct {
		Site map[int]cbor.RawMessage `cbor:"4,keyasint"`
	}
	if err := cbor.Unmarshal(env.Body, &body); err != nil {
		t.Fatal(err)
	}
	if _, ok := body.Site[8]; ok || len(body.Site) == 0 {
		t.Errorf("site keys %v: want no uplink key (8) for DHCP", keys(body.Site))
	}
}

func keys(m map[int]cbor.RawMessage) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	return out
}
