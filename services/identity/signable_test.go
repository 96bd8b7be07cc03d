package identity

import (
	"bytes"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/otgate/otgate/audit"
)

// FuzzSignable feeds arbitrary messages to what decides whether the
// device key signs them (a caller of the socket chooses them): it must
// never panic, and what it accepts must be one of the two kinds whole,
// never something that starts like DER (a certificate's TBS, a CSR, an
// OCSP or CRL body: a SEQUENCE, 0x30).
func FuzzSignable(f *testing.F) {
	head := sha256.Sum256([]byte("record"))
	transcript := sha256.Sum256([]byte("handshake"))
	server := []byte(strings.Repeat(" ", 64) + "TLS 1.3, server CertificateVerify\x00")
	f.Add(append(append([]byte(nil), server...), transcript[:]...))
	f.Add(append(append([]byte(nil), server...), make([]byte, 48)...))
	f.Add(append(append([]byte(nil), server...), make([]byte, 31)...))
	f.Add([]byte(strings.Repeat(" ", 64) + "TLS 1.3, client CertificateVerify\x00" + string(transcript[:])))
	f.Add(audit.CheckpointMessage("log-1", 1, 42, head[:]))
	f.Add(audit.CheckpointMessage("", 0, 0, head[:]))
	f.Add(audit.CheckpointMessage("log-1", 9, 3, head[:]))
	f.Add(audit.CheckpointMessage("log-1", 1, 2, head[:16]))
	f.Add([]byte{0x30, 0x82, 0x01, 0x0a, 0x02, 0x01, 0x07})
	f.Add([]byte{0x85, 0x60, 0x60, 0x00, 0x00, 0x40})
	f.Add([]byte{0x9f, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, msg []byte) {
		kind, err := signable(msg)
		if err != nil {
			if kind != "" {
				t.Fatalf("refused with kind %q", kind)
			}
			return
		}
		switch kind {
		case "tls13-server-certificate-verify":
			if !bytes.HasPrefix(msg, tls13ServerContext) || (len(msg) != len(tls13ServerContext)+32 && len(msg) != len(tls13ServerContext)+48) {
				t.Fatalf("accepted as a server CertificateVerify: %x", msg)
			}
		case "audit-checkpoint":
			if msg[0] != 0x85 || audit.CheckCheckpointMessage(msg) != nil {
				t.Fatalf("accepted as a checkpoint: %x", msg)
			}
		default:
			t.Fatalf("accepted as %q: %x", kind, msg)
		}
		if msg[0] == 0x30 {
			t.Fatalf("accepted a message that starts like DER: %x", msg)
		}
	})
}
