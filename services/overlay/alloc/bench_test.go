package alloc

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// endpoints65k is the benchmark's plant: 65,000 assets in four zones of
// 16,384 addresses each (a whole /16; 65,023 usable after reservations).
func endpoints65k() (Config, []Request) {
	cfg := Config{PoolSize: 16384}
	reqs := make([]Request, 65000)
	for i := range reqs {
		reqs[i] = Request{Asset: fmt.Sprintf("asset-%05d", i), Zone: fmt.Sprintf("zone-%d", i%4)}
	}
	return cfg, reqs
}

// BenchmarkAllocate65000 allocates 65,000 endpoints from an empty state,
// including the crash-safe write of the result. Target: <= 1 s.
func BenchmarkAllocate65000(b *testing.B) {
	cfg, reqs := endpoints65k()
	dir := b.TempDir()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		path := filepath.Join(dir, fmt.Sprintf("alloc-%d.cbor", i))
		a, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := a.Apply(cfg, reqs, t0); err != nil {
			b.Fatal(err)
		}
		if n := len(a.Table()); n != 65000 {
			b.Fatalf("%d entries", n)
		}
	}
}

// BenchmarkReapply65000 applies the same 65,000-asset policy to a full
// table (the common case: a policy edit that touches one asset).
func BenchmarkReapply65000(b *testing.B) {
	cfg, reqs := endpoints65k()
	a, err := Open(filepath.Join(b.TempDir(), "alloc.cbor"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := a.Apply(cfg, reqs, t0); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Apply(cfg, reqs, t0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReload65000 loads a 65,000-entry state file from disk (what
// the overlay service does at boot). Target: <= 100 ms.
func BenchmarkReload65000(b *testing.B) {
	cfg, reqs := endpoints65k()
	path := filepath.Join(b.TempDir(), "alloc.cbor")
	a, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := a.Apply(cfg, reqs, t0); err != nil {
		b.Fatal(err)
	}
	if st, err := os.Stat(path); err == nil {
		b.ReportMetric(float64(st.Size()), "file-bytes")
	}
	b.ReportAllocs()
	for b.Loop() {
		r, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		if n := len(r.Table()); n != 65000 {
			b.Fatalf("%d entries", n)
		}
	}
}
