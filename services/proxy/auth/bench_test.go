package auth

import (
	"testing"
	"time"
)

// BenchmarkArgon2Verify measures one password check with the default
// parameters (the cost of every login, and the attacker's cost per guess).
func BenchmarkArgon2Verify(b *testing.B) {
	h, err := hashPassword([]byte(testPassword), DefaultArgon2)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !h.verify([]byte(testPassword)) {
			b.Fatal("verify failed")
		}
	}
	b.ReportMetric(float64(DefaultArgon2.MemoryKiB)/1024, "MiB/hash")
	b.Logf("argon2id t=%d m=%d MiB p=%d: %v per verification", DefaultArgon2.Time, DefaultArgon2.MemoryKiB/1024, DefaultArgon2.Threads, b.Elapsed()/time.Duration(b.N))
}
