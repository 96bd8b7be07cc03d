package identity

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// nvChunk is the most one TPM2_NV_Read returns on every TPM
// (MAX_NV_BUFFER_SIZE is at least this).
const nvChunk = 512

// readNV reads the whole of NV index with the index's own empty auth (the
// EK certificates, the identity marker). defined is false, and data nil,
// when the index does not exist.
func readNV(t transport.TPM, index tpm2.TPMHandle) (data []byte, defined bool, err error) {
	pub, err := tpm2.NVReadPublic{NVIndex: index}.Execute(t)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("identity: read NV index %#x public area: %w", uint32(index), err)
	}
	nvPub, err := pub.NVPublic.Contents()
	if err != nil {
		return nil, true, fmt.Errorf("identity: NV index %#x public area: %w", uint32(index), err)
	}
	nv := tpm2.NamedHandle{Handle: index, Name: pub.NVName}
	for off := 0; off < int(nvPub.DataSize); off += nvChunk {
		n := min(nvChunk, int(nvPub.DataSize)-off)
		rsp, err := tpm2.NVRead{
			AuthHandle: tpm2.AuthHandle{Handle: index, Name: pub.NVName, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    nv,
			Size:       uint16(n),
			Offset:     uint16(off),
		}.Execute(t)
		if err != nil {
			return nil, true, fmt.Errorf("identity: read NV index %#x at %d: %w", uint32(index), off, err)
		}
		data = append(data, rsp.Data.Buffer...)
	}
	return data, true, nil
}
