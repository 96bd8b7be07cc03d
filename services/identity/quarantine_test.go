package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/services/identity/api"
	"github.com/otgate/otgate/services/identity/swtpmtest"
)

// In quarantine the local API serves status and nothing else: a tampered
// image on the same TPM must not sign audit checkpoints, present the
// device certificate (and sign TLS handshakes with it), certify services
// or read secrets as this gate. Every refusal has code quarantine and
// names the quarantine's reason (PCR 15 here) and what to do.
func TestQuarantineAPIServesOnlyStatus(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	cfg := testConfig(t, SocketTPM(sw.Socket))
	id := boot(t, cfg, sw, "image-A")
	if err := id.SealSecret("proxy", "users", []byte("x")); err != nil {
		t.Fatal(err)
	}
	// Outside quarantine the same calls work (the refusals below are
	// quarantine's, not a broken fixture).
	sock := serve(t, id, -1, map[uint32]string{uint32(os.Getuid()): "proxy"})
	c, err := api.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	head := sha256.Sum256([]byte("record 7"))
	checkpoint := audit.CheckpointMessage("log-1", 1, 7, head[:])
	if _, err := c.SignMessage(checkpoint, crypto.SHA256); err != nil {
		t.Fatalf("sign outside quarantine: %v", err)
	}
	if _, err := c.TLSCertificate(); err != nil {
		t.Fatalf("tls-cert outside quarantine: %v", err)
	}
	c.Close()
	id.Close()
	sw.Stop()

	sw = swtpmtest.Start(t, sw.StateDir)
	id = boot(t, cfg, sw, "image-B (tampered)")
	defer id.Close()
	if id.Quarantine() == nil {
		t.Fatal("no quarantine after the measured PCR changed")
	}
	sock = serve(t, id, -1, map[uint32]string{uint32(os.Getuid()): "proxy"})
	c, err = api.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	st, err := c.Status()
	if err != nil || !st.Quarantine || !strings.Contains(st.Reason, "PCR 15") || st.Remedy == "" || st.RemedyShort == "" {
		t.Fatalf("status in quarantine: %+v, %v", st, err)
	}

	wk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, wk)
	refused := map[string]func() error{
		"sign-message": func() error { _, err := c.SignMessage(checkpoint, crypto.SHA256); return err },
		"tls-cert": func() error {
			_, err := c.TLSCertificate()
			return err
		},
		"workload-cert": func() error {
			_, err := c.Call(&api.Request{Op: api.OpWorkloadCert, CSR: csr, TTLSeconds: 600})
			return err
		},
		"unseal": func() error { _, err := c.Unseal("users"); return err },
		"seal":   func() error { return c.Seal("users", []byte("y")) },
		"seal-next-boot": func() error {
			_, err := c.Call(&api.Request{Op: api.OpSealNextBoot, Digest: head[:]})
			return err
		},
		"an unknown operation": func() error {
			_, err := c.Call(&api.Request{Op: "mint-coins"})
			return err
		},
	}
	for what, call := range refused {
		err := call()
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Code != api.CodeQuarantine {
			t.Errorf("%s in quarantine: %v, want code %q", what, err, api.CodeQuarantine)
			continue
		}
		for _, want := range []string{"quarantine", "PCR 15", "what to do"} {
			if !strings.Contains(ae.Msg, want) {
				t.Errorf("%s refusal does not say %q: %s", what, want, ae.Msg)
			}
		}
	}
	// Status is still served after the refusals.
	if st, err := c.Status(); err != nil || !st.Quarantine {
		t.Fatalf("status after refusals: %+v, %v", st, err)
	}

	// In-process callers get the same answer.
	if _, err := id.SignMessage(checkpoint, crypto.SHA256); !errors.Is(err, ErrQuarantine) {
		t.Errorf("SignMessage in quarantine: %v, want ErrQuarantine", err)
	}
	if _, err := id.CSR(); !errors.Is(err, ErrQuarantine) {
		t.Errorf("CSR in quarantine: %v, want ErrQuarantine", err)
	}
	if _, _, err := id.IssueWorkloadCertificate("proxy", csr, 10*time.Minute); !errors.Is(err, ErrQuarantine) {
		t.Errorf("IssueWorkloadCertificate in quarantine: %v, want ErrQuarantine", err)
	}
}
