// Package bootmeasure is the one TPM operation PID 1 performs: extending
// the boot measurement PCR. It is split from package identity so that init
// links go-tpm's command encoding and nothing of identity's X.509, TLS and
// key handling (init's memory stays small); identity.ExtendBootMeasurement
// and identity.MeasuredPCR are this package's Extend and PCR.
package bootmeasure

import (
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// PCR is the PCR init extends with the digest of what it boots. Firmware
// (0-7), boot loaders (8-14 as used by shim, grub, systemd-boot and the
// EFI stub) and the resettable debug PCRs (16, 23) do not use it.
const PCR = 15

// Extend extends PCR (SHA-256 bank only: the sealing policy reads that bank
// alone) with digest.
func Extend(t transport.TPM, digest [32]byte) error {
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(PCR), Auth: tpm2.PasswordAuth(nil)},
		Digests: tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{
			{HashAlg: tpm2.TPMAlgSHA256, Digest: digest[:]},
		}},
	}.Execute(t)
	if err != nil {
		return fmt.Errorf("extend PCR %d: %w", PCR, err)
	}
	return nil
}
