package identity

import (
	"bytes"
	"crypto/sha256"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/otgate/otgate/services/identity/swtpmtest"
)

// busRecorder keeps every command and response that crossed the TPM
// transport: what a probe on the bus of a discrete TPM (LPC, SPI, I2C)
// reads on a gate in an unguarded cabinet.
type busRecorder struct {
	mu      sync.Mutex
	traffic [][]byte
}

func (b *busRecorder) opener(socket string) TPMOpener {
	return TPMOpener{Name: "recorded swtpm:" + socket, open: func() (transport.TPMCloser, error) {
		t, err := openSWTPM(socket)
		if err != nil {
			return nil, err
		}
		return &recordedTPM{t: t, b: b}, nil
	}}
}

// saw reports whether secret crossed the bus in the clear.
func (b *busRecorder) saw(secret []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.traffic {
		if bytes.Contains(m, secret) {
			return true
		}
	}
	return false
}

type recordedTPM struct {
	t transport.TPMCloser
	b *busRecorder
}

func (r *recordedTPM) Send(cmd []byte) ([]byte, error) {
	rsp, err := r.t.Send(cmd)
	r.b.mu.Lock()
	r.b.traffic = append(r.b.traffic, bytes.Clone(cmd), bytes.Clone(rsp))
	r.b.mu.Unlock()
	return rsp, err
}

func (r *recordedTPM) Close() error { return r.t.Close() }

// The data key is sealed (first boot, reseal, an authorized apply's
// next-boot slot) and unsealed (every boot) over the TPM's bus. In the
// clear there, a probe on the bus reads it and with it every secret of
// the gate (user store, TOTP seeds, the workload and user CA keys): the
// TPM2_Create that seals it must carry it encrypted, and the
// TPM2_Unseal must answer it encrypted, under a session salted with the
// SRK (whose key a probe never sees).
func TestDataKeyNeverCrossesTheBusInTheClear(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	bus := &busRecorder{}
	cfg := testConfig(t, bus.opener(sw.Socket))
	bootRecorded := func(booted string) *Identity {
		t.Helper()
		tpm, err := SocketTPM(sw.Socket).Open()
		if err != nil {
			t.Fatal(err)
		}
		if err := ExtendBootMeasurement(tpm, sha256.Sum256([]byte(booted))); err != nil {
			t.Fatal(err)
		}
		tpm.Close()
		cfg.TPM = bus.opener(sw.Socket)
		id, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	reboot := func(booted string) *Identity {
		t.Helper()
		sw.Stop()
		sw = swtpmtest.Start(t, sw.StateDir)
		return bootRecorded(booted)
	}
	check := func(what string, id *Identity) {
		t.Helper()
		if id.dataKey == nil {
			t.Fatalf("%s: no data key (quarantine: %v)", what, id.Quarantine())
		}
		if bus.saw(id.dataKey.b) {
			t.Fatalf("%s: the data key crossed the TPM bus in the clear", what)
		}
	}

	id := bootRecorded("config-A") // first boot: seals
	check("first boot (seal)", id)
	id.Close()
	id = reboot("config-A") // unseals
	check("boot (unseal)", id)
	if err := id.SealNextBoot(sha256.Sum256([]byte("config-B"))); err != nil {
		t.Fatal(err)
	}
	check("seal for the next boot", id)
	id.Close()
	id = reboot("config-B") // unseals the next-boot slot
	check("boot of an applied configuration", id)
	id.Close()

	id = reboot("config-C")
	if id.Quarantine() == nil {
		t.Fatal("config-C: no quarantine")
	}
	id.Close()
	cfg.TPM = bus.opener(sw.Socket)
	if _, err := Reseal(cfg); err != nil {
		t.Fatal(err)
	}
	id = reboot("config-C")
	defer id.Close()
	check("reseal and the boot after it", id)
}
