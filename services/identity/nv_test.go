package identity

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// defineNV defines an owner-written NV index of size bytes, readable with
// its empty auth (as the marker's), and writes data into it unless nil.
func defineNV(t *testing.T, tt transport.TPM, index tpm2.TPMHandle, size int, data []byte) {
	t.Helper()
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	if _, err := (tpm2.NVDefineSpace{AuthHandle: owner, PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
		NVIndex: index, NameAlg: tpm2.TPMAlgSHA256, DataSize: uint16(size),
		Attributes: tpm2.TPMANV{OwnerWrite: true, OwnerRead: true, AuthRead: true, NoDA: true, NT: tpm2.TPMNTOrdinary},
	})}).Execute(tt); err != nil {
		t.Fatalf("define NV index %#x: %v", uint32(index), err)
	}
	pub, err := tpm2.NVReadPublic{NVIndex: index}.Execute(tt)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += 512 {
		end := min(off+512, len(data))
		if _, err := (tpm2.NVWrite{AuthHandle: owner, NVIndex: tpm2.NamedHandle{Handle: index, Name: pub.NVName},
			Data: tpm2.TPM2BMaxNVBuffer{Buffer: data[off:end]}, Offset: uint16(off)}).Execute(tt); err != nil {
			t.Fatalf("write NV index %#x at %d: %v", uint32(index), off, err)
		}
	}
}

// readNV reads an index whole, in as many reads as its size takes; an
// index that does not exist is not an error, one never written is.
func TestReadNV(t *testing.T) {
	_, opener := startTPM(t)
	withTPMConn(t, opener, func(tt transport.TPM) {
		if b, defined, err := readNV(tt, 0x01004f00); b != nil || defined || err != nil {
			t.Errorf("undefined index: %x, %v, %v; want nothing", b, defined, err)
		}
		for i, size := range []int{1, 511, 512, 513, 1300} {
			index := tpm2.TPMHandle(0x01004f10 + i)
			want := make([]byte, size)
			for j := range want {
				want[j] = byte(j*7 + i)
			}
			defineNV(t, tt, index, size, want)
			got, defined, err := readNV(tt, index)
			if err != nil || !defined || !bytes.Equal(got, want) {
				t.Errorf("%d bytes: read %d bytes (equal %v), %v, %v", size, len(got), bytes.Equal(got, want), defined, err)
			}
		}
		// Defined, never written: a power cut between define and write.
		defineNV(t, tt, 0x01004f01, 64, nil)
		_, defined, err := readNV(tt, 0x01004f01)
		if !defined || !errors.Is(err, tpm2.TPMRCNVUninitialized) || !strings.Contains(err.Error(), "read NV index 0x1004f01 at 0: ") {
			t.Errorf("unwritten index: %v, %v; want defined, TPM_RC_NV_UNINITIALIZED at 0", defined, err)
		}
	})
}

// A marker defined but never written (a power cut in writeMarker) is
// evidence of an earlier identity: a first boot refuses, saying the index
// does not read and why, in the TPM's words.
func TestUnwrittenMarkerRefused(t *testing.T) {
	_, opener := startTPM(t)
	withTPMConn(t, opener, func(tt transport.TPM) { defineNV(t, tt, MarkerNVIndex, 64, nil) })
	cfg := testConfig(t, opener)
	_, err := Open(cfg)
	want := fmt.Sprintf("its identity marker NV index %#x is defined but does not read (TPM_RC_NV_UNINITIALIZED", uint32(MarkerNVIndex))
	if !errors.Is(err, ErrEarlierIdentity) || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want ErrEarlierIdentity with %q", err, want)
	}
	if _, err := os.Stat(cfg.StateDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state directory created: %v", err)
	}
}
