package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"
)

// The device certificate and the workload CA are made on a first boot,
// maybe before the time service's first sync, on a hardware clock that
// can run up to 14 hours ahead (kept in local time). Set back by that,
// the clock must still find them valid: they start a day early.
func TestLongLivedCertificatesSurviveTheClockSetBack(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	unsynced := time.Date(2026, 11, 23, 14, 0, 0, 0, time.UTC) // 14 h ahead
	synced := unsynced.Add(-14 * time.Hour)
	der, err := selfSignedDeviceCert(key, "plant.example", "SN1", false, unsynced)
	if err != nil {
		t.Fatal(err)
	}
	device, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if synced.Before(device.NotBefore) {
		t.Errorf("device certificate starts %s: not valid at %s, 14 h before it was made", device.NotBefore, synced)
	}
	_, caDER, err := newWorkloadCA("plant.example", "SN1", false, unsynced)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	if synced.Before(ca.NotBefore) {
		t.Errorf("workload CA starts %s: not valid at %s, 14 h before it was made", ca.NotBefore, synced)
	}
}
