package identity

import (
	"crypto"
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	"github.com/otgate/otgate/services/identity/swtpmtest"
)

func startTPM(tb testing.TB) (*swtpmtest.TPM, TPMOpener) {
	s := swtpmtest.Start(tb, "")
	return s, SocketTPM(s.Socket)
}

// testConfig is a TPM-mode configuration with a fresh state directory.
func testConfig(tb testing.TB, tpm TPMOpener) Config {
	return Config{
		StateDir:  filepath.Join(tb.TempDir(), "identity"),
		Site:      "plant-1.example",
		TPM:       tpm,
		BoardPCRs: []uint{0, 7},
		Create:    true,
		Log:       testWriter{tb},
	}
}

type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Logf("%s", p)
	return len(p), nil
}

// tlsCertificate builds a tls.Certificate from a chain and a signer.
type tlsCertificate struct {
	chain  [][]byte
	signer crypto.Signer
}

func (c tlsCertificate) get() *tls.Certificate {
	return &tls.Certificate{Certificate: c.chain, PrivateKey: c.signer}
}

func osGetuid() int { return os.Getuid() }
