package identity

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// logBuffer collects the service's log lines.
type logBuffer struct{ bytes.Buffer }

// countingTPM counts the TPM2_CreatePrimary commands sent through it.
type countingTPM struct {
	transport.TPMCloser
	createPrimary *int
}

func (c countingTPM) Send(cmd []byte) ([]byte, error) {
	if len(cmd) >= 10 && tpm2.TPMCC(binary.BigEndian.Uint32(cmd[6:10])) == tpm2.TPMCCCreatePrimary {
		*c.createPrimary++
	}
	return c.TPMCloser.Send(cmd)
}

func counting(o TPMOpener, n *int) TPMOpener {
	return TPMOpener{Name: o.Name, open: func() (transport.TPMCloser, error) {
		t, err := o.open()
		if err != nil {
			return nil, err
		}
		return countingTPM{t, n}, nil
	}}
}

// A new identity keeps the SRK persistent at SRKHandle and records its
// name; the identity opens with it there, without it (evicted: it
// re-creates the SRK) and next to a foreign key planted at the handle,
// which it leaves alone. A first boot creates the SRK once, for the
// device key, the seal and the persistent copy (and the EK once, for the
// serial).
func TestSRKPersistent(t *testing.T) {
	_, tpm := startTPM(t)
	cfg := testConfig(t, tpm)
	firstBoot := func(cfg Config, wantCreatePrimary int) {
		t.Helper()
		n := 0
		c := cfg
		c.TPM = counting(cfg.TPM, &n)
		id, err := Open(c)
		if err != nil {
			t.Fatalf("first boot: %v", err)
		}
		id.Close()
		if n != wantCreatePrimary {
			t.Fatalf("first boot: %d CreatePrimary commands, want %d", n, wantCreatePrimary)
		}
	}
	firstBoot(cfg, 2)
	var key keyRecord
	if err := readState(cfg.StateDir, KeyFile, &key); err != nil {
		t.Fatal(err)
	}
	withTPM := func(f func(tt transport.TPM)) {
		t.Helper()
		tt, err := tpm.Open()
		if err != nil {
			t.Fatal(err)
		}
		defer tt.Close()
		f(tt)
	}
	var persisted []byte
	withTPM(func(tt transport.TPM) {
		rsp, err := (tpm2.ReadPublic{ObjectHandle: SRKHandle}).Execute(tt)
		if err != nil {
			t.Fatalf("no key at %#x after creating the identity: %v", uint32(SRKHandle), err)
		}
		persisted = rsp.Name.Buffer
	})
	if len(key.SRKName) == 0 || !bytes.Equal(key.SRKName, persisted) {
		t.Fatalf("key record SRK name %x, persistent SRK %x", key.SRKName, persisted)
	}
	reopen := func(what string, wantCreatePrimary int) {
		t.Helper()
		n := 0
		c := cfg
		c.TPM = counting(tpm, &n)
		id, err := Open(c)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if id.Quarantine() != nil {
			t.Fatalf("%s: quarantine: %v", what, id.Quarantine().Reason)
		}
		sig, err := id.Signer().Sign(nil, make([]byte, 32), crypto.SHA256)
		if err != nil || len(sig) == 0 {
			t.Fatalf("%s: sign: %v", what, err)
		}
		id.Close()
		if n != wantCreatePrimary {
			t.Fatalf("%s: %d CreatePrimary commands, want %d", what, n, wantCreatePrimary)
		}
	}
	reopen("with the persistent SRK", 0)

	// Evicted (an operator's tpm2_evictcontrol): the SRK is re-created.
	withTPM(func(tt transport.TPM) {
		if _, err := (tpm2.EvictControl{Auth: tpm2.TPMRHOwner, ObjectHandle: tpm2.NamedHandle{Handle: SRKHandle, Name: tpm2.TPM2BName{Buffer: persisted}},
			PersistentHandle: SRKHandle}).Execute(tt); err != nil {
			t.Fatalf("evict the SRK: %v", err)
		}
	})
	reopen("without the persistent SRK", 1)

	// Another key at the handle: a new identity works and leaves it there.
	// On another TPM: this one holds the first identity's marker
	// (MarkerNVIndex), and a second identity on it is refused
	// (ErrEarlierIdentity, lostperm_test.go).
	_, tpm = startTPM(t)
	var foreign []byte
	withTPM(func(tt transport.TPM) {
		rsp, err := (tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.RSASRKTemplate)}).Execute(tt)
		if err != nil {
			t.Fatal(err)
		}
		defer (tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}).Execute(tt)
		if _, err := (tpm2.EvictControl{Auth: tpm2.TPMRHOwner, ObjectHandle: tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name},
			PersistentHandle: SRKHandle}).Execute(tt); err != nil {
			t.Fatalf("plant a foreign key: %v", err)
		}
		foreign = rsp.Name.Buffer
	})
	var log logBuffer
	cfg2 := testConfig(t, tpm)
	cfg2.Log = &log
	// The SRK three times: the check for an earlier identity compares it
	// with the key at the handle, create makes the device key and the seal
	// under one, and the start after it re-creates it (as every start
	// does when the handle holds another key).
	firstBoot(cfg2, 4)
	if !strings.Contains(log.String(), "holds another key; left alone") {
		t.Errorf("log does not say the handle was left alone:\n%s", log.String())
	}
	var key2 keyRecord
	if err := readState(cfg2.StateDir, KeyFile, &key2); err != nil {
		t.Fatal(err)
	}
	if len(key2.SRKName) != 0 {
		t.Errorf("key record names SRK %x though the handle holds another key", key2.SRKName)
	}
	withTPM(func(tt transport.TPM) {
		rsp, err := (tpm2.ReadPublic{ObjectHandle: SRKHandle}).Execute(tt)
		if err != nil || !bytes.Equal(rsp.Name.Buffer, foreign) {
			t.Fatalf("the foreign key at %#x was touched: %v", uint32(SRKHandle), err)
		}
	})
	cfg2.Log = testWriter{t}
	id2, err := Open(cfg2)
	if err != nil {
		t.Fatalf("reopen next to the foreign key: %v", err)
	}
	id2.Close()
}
