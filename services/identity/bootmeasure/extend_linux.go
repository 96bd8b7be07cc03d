package bootmeasure

import (
	"fmt"

	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// ExtendDevice opens the TPM character device (normally /dev/tpmrm0),
// extends PCR with digest and closes it.
func ExtendDevice(path string, digest [32]byte) error {
	t, err := linuxtpm.Open(path)
	if err != nil {
		return fmt.Errorf("open TPM %s: %w", path, err)
	}
	defer t.Close()
	return Extend(t, digest)
}
