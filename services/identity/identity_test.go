package identity

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"github.com/otgate/otgate/services/identity/swtpmtest"
	"os"
	"path/filepath"
	"testing"
)

func TestKeyCreatedOnceAndReusedAcrossRestarts(t *testing.T) {
	_, tpm := startTPM(t)
	cfg := testConfig(t, tpm)

	first, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pub1 := first.Signer().Public().(*ecdsa.PublicKey)
	cert1 := first.DeviceCertificate()[0]
	serial := first.Serial()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	keyBlob, err := os.ReadFile(filepath.Join(cfg.StateDir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}

	// Restart twice: same key, same blobs, same certificate.
	for i := 0; i < 2; i++ {
		again, err := Open(cfg)
		if err != nil {
			t.Fatalf("restart %d: %v", i, err)
		}
		if !again.Signer().Public().(*ecdsa.PublicKey).Equal(pub1) {
			t.Fatalf("restart %d: device key changed", i)
		}
		if !bytes.Equal(again.DeviceCertificate()[0], cert1) || again.Serial() != serial {
			t.Fatalf("restart %d: device certificate or serial changed", i)
		}
		if q := again.Quarantine(); q != nil {
			t.Fatalf("restart %d: unexpected quarantine: %s", i, q.Reason)
		}
		digest := sha256.Sum256([]byte("checkpoint"))
		sig, err := again.SignDigest(digest[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if !ecdsa.VerifyASN1(pub1, digest[:], sig) {
			t.Fatalf("restart %d: signature does not verify with the first boot's key", i)
		}
		again.Close()
	}
	after, err := os.ReadFile(filepath.Join(cfg.StateDir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(keyBlob, after) {
		t.Fatal("key.cbor was rewritten on restart")
	}
}

// TestEKInventoryFromManufacturedTPM uses a TPM with EK certificates in
// NV (swtpm_setup): the RSA EK certificate at 0x01c00002 is recorded and
// certifies the recorded EK public key, and the serial derives from it.
func TestEKInventoryFromManufacturedTPM(t *testing.T) {
	sw := swtpmtest.StartManufactured(t)
	id, err := Open(testConfig(t, SocketTPM(sw.Socket)))
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()
	pub, certRSA, certECC := id.EK()
	if len(certECC) == 0 {
		t.Fatal("ECC EK certificate (0x01c00016 on swtpm) not recorded")
	}
	if len(certRSA) == 0 {
		t.Fatal("EK certificate at 0x01c00002 not recorded")
	}
	cert, err := x509.ParseCertificate(certRSA)
	if err != nil {
		t.Fatal(err)
	}
	certPub, err := x509.MarshalPKIXPublicKey(cert.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(certPub, pub) {
		t.Fatal("EK certificate does not certify the recorded EK public key")
	}
	if want := (&ekInventory{PublicDER: pub}).serial(); id.Serial() != want {
		t.Fatalf("serial %s, want %s (from the EK)", id.Serial(), want)
	}
	t.Logf("EK certificate issuer %q, serial %s", cert.Issuer.String(), id.Serial())
}
