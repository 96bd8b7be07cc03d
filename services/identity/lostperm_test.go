package identity

import (
	"crypto/ecdsa"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// dirEntries lists the names in dir (the state directory's parent: a
// refused create must not leave a temporary directory there).
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func withTPMConn(t *testing.T, o TPMOpener, f func(tt transport.TPM)) {
	t.Helper()
	tt, err := o.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer tt.Close()
	f(tt)
}

func tpmMarker(t *testing.T, o TPMOpener) *markerRecord {
	t.Helper()
	var m *markerRecord
	withTPMConn(t, o, func(tt transport.TPM) {
		var err error
		if m, _, err = readMarker(tt); err != nil {
			t.Fatal(err)
		}
	})
	return m
}

// A lost /perm is not a first boot: with the state directory gone (or
// empty) on a TPM that held an identity, the service refuses to create
// one, naming what it found and what to do, and creates nothing; `otgate
// identity reset` makes the new identity, which records what it replaced,
// and the service logs that once, at its first start.
func TestLostPermRefusesNewIdentity(t *testing.T) {
	_, opener := startTPM(t)
	cfg := testConfig(t, opener)
	id, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	oldSerial, oldPub := id.Serial(), id.Signer().Public().(*ecdsa.PublicKey)
	oldFP := keyFingerprint(oldPub)
	id.Close()
	m := tpmMarker(t, opener)
	if m == nil || m.Serial != oldSerial || m.KeyFingerprint != oldFP {
		t.Fatalf("TPM marker %+v, want serial %s key %s", m, oldSerial, oldFP)
	}

	parent := filepath.Dir(cfg.StateDir)
	if err := os.RemoveAll(cfg.StateDir); err != nil {
		t.Fatal(err)
	}
	before := dirEntries(t, parent)
	for _, what := range []string{"state directory removed", "state directory empty"} {
		if what == "state directory empty" {
			if err := os.Mkdir(cfg.StateDir, 0o700); err != nil {
				t.Fatal(err)
			}
			before = dirEntries(t, parent)
		}
		id, err := Open(cfg)
		if err == nil {
			id.Close()
			t.Fatalf("%s: Open created a new identity on a TPM that held one", what)
		}
		if !errors.Is(err, ErrEarlierIdentity) {
			t.Fatalf("%s: got %v, want ErrEarlierIdentity", what, err)
		}
		for _, want := range []string{fmt.Sprintf("%#x", uint32(MarkerNVIndex)), oldSerial, oldFP, "restore " + cfg.StateDir,
			"otgate identity reset -yes", DeviceURI(cfg.Site, oldSerial).String()} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error does not say %q: %v", what, want, err)
			}
		}
		t.Logf("%s: %v", what, err)
		if after := dirEntries(t, parent); !slices.Equal(after, before) {
			t.Fatalf("%s: %s changed: %v -> %v", what, parent, before, after)
		}
		if es, err := os.ReadDir(cfg.StateDir); err == nil && len(es) != 0 {
			t.Fatalf("%s: state directory has %d entries", what, len(es))
		}
		if got := tpmMarker(t, opener); *got != *m {
			t.Fatalf("%s: TPM marker changed: %+v -> %+v", what, m, got)
		}
	}

	// reset: a new identity, which records the one it replaced.
	var resetLog logBuffer
	rc := cfg
	rc.Log = &resetLog
	if _, err := Reset(rc); err != nil {
		t.Fatal(err)
	}
	if out := resetLog.String(); !strings.Contains(out, "replacing serial "+oldSerial+", device key "+oldFP) {
		t.Errorf("reset output does not name the identity it replaced:\n%s", out)
	}
	// The CLI's own opens (csr, install-cert) do not consume the
	// announcement.
	var cliLog logBuffer
	cc := cfg
	cc.Create, cc.Log = false, &cliLog
	if id, err = Open(cc); err != nil {
		t.Fatal(err)
	}
	id.Close()
	if strings.Contains(cliLog.String(), "REPLACED") {
		t.Errorf("a non-service open logged the replacement:\n%s", cliLog.String())
	}
	var svcLog logBuffer
	sc := cfg
	sc.Service, sc.Log = true, &svcLog
	id, err = Open(sc)
	if err != nil {
		t.Fatal(err)
	}
	newFP := keyFingerprint(id.Signer().Public())
	id.Close()
	if newFP == oldFP {
		t.Fatal("reset kept the device key")
	}
	line := ""
	for _, l := range strings.Split(svcLog.String(), "\n") {
		if strings.Contains(l, "REPLACED an earlier one on ") {
			line = l
		}
	}
	for _, want := range []string{"RESET: ", "old serial " + oldSerial, "old device key " + oldFP, newFP} {
		if !strings.Contains(line, want) {
			t.Errorf("service start after reset: log line lacks %q: %q\n%s", want, line, svcLog.String())
		}
	}
	t.Logf("%s", line)
	svcLog.Reset()
	if id, err = Open(sc); err != nil {
		t.Fatal(err)
	}
	id.Close()
	if strings.Contains(svcLog.String(), "REPLACED") {
		t.Errorf("the replacement was logged again at the second start:\n%s", svcLog.String())
	}
	if got := tpmMarker(t, opener); got == nil || got.KeyFingerprint != newFP {
		t.Errorf("TPM marker after reset %+v, want the new key %s", got, newFP)
	}
}

// An identity made before the marker existed left only the persistent
// SRK: that is evidence enough.
func TestLostPermSRKOnlyEvidence(t *testing.T) {
	_, opener := startTPM(t)
	cfg := testConfig(t, opener)
	id, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	id.Close()
	withTPMConn(t, opener, func(tt transport.TPM) {
		pub, err := tpm2.NVReadPublic{NVIndex: MarkerNVIndex}.Execute(tt)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := (tpm2.NVUndefineSpace{AuthHandle: tpm2.TPMRHOwner,
			NVIndex: tpm2.NamedHandle{Handle: MarkerNVIndex, Name: pub.NVName}}).Execute(tt); err != nil {
			t.Fatal(err)
		}
	})
	os.RemoveAll(cfg.StateDir)
	_, err = Open(cfg)
	if !errors.Is(err, ErrEarlierIdentity) || !strings.Contains(err.Error(), fmt.Sprintf("%#x", uint32(SRKHandle))) {
		t.Fatalf("got %v, want ErrEarlierIdentity naming the SRK at %#x", err, uint32(SRKHandle))
	}
	if _, err := os.Stat(cfg.StateDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state directory created: %v", err)
	}
	t.Logf("%v", err)
}

// tmpfsDir is a fresh directory on a tmpfs (/dev/shm), or the test is
// skipped.
func tmpfsDir(t *testing.T) string {
	t.Helper()
	if fs, err := volatileFS("/dev/shm"); err != nil || fs != "tmpfs" {
		t.Skipf("/dev/shm is not a tmpfs (%q, %v)", fs, err)
	}
	d, err := os.MkdirTemp("/dev/shm", "otgate-identity-test")
	if err != nil {
		t.Skipf("no tmpfs directory: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// On a tmpfs state directory (init's fallback when /perm has no disk) a
// TPM identity is not created, neither on a first boot nor by reset,
// unless allowed; nothing is written to the directory or the TPM. Dev
// mode and -allow-volatile-state may.
func TestVolatileStateRefused(t *testing.T) {
	dir := tmpfsDir(t)
	_, opener := startTPM(t)
	cfg := testConfig(t, opener)
	cfg.StateDir = filepath.Join(dir, "identity")
	cfg.RequirePersistentState = true
	_, err := Open(cfg)
	if !errors.Is(err, ErrVolatileState) || !strings.Contains(err.Error(), "tmpfs") || !strings.Contains(err.Error(), "-allow-volatile-state") {
		t.Fatalf("Open on a tmpfs: %v, want ErrVolatileState naming tmpfs and the flag", err)
	}
	t.Logf("%v", err)
	if _, err := Reset(cfg); !errors.Is(err, ErrVolatileState) {
		t.Fatalf("Reset on a tmpfs: %v, want ErrVolatileState", err)
	}
	if es := dirEntries(t, dir); len(es) != 0 {
		t.Fatalf("refused create left %v in %s", es, dir)
	}
	if m := tpmMarker(t, opener); m != nil {
		t.Fatalf("refused create marked the TPM: %+v", m)
	}
	withTPMConn(t, opener, func(tt transport.TPM) {
		if _, err := (tpm2.ReadPublic{ObjectHandle: SRKHandle}).Execute(tt); err == nil {
			t.Fatalf("refused create made the SRK persistent")
		}
	})

	// Dev mode does not need it.
	dev := Config{StateDir: filepath.Join(dir, "dev"), Site: "lab", DevMode: true, Create: true, RequirePersistentState: true, Log: testWriter{t}}
	id, err := Open(dev)
	if err != nil {
		t.Fatalf("dev mode on a tmpfs: %v", err)
	}
	id.Close()

	// The flags set the requirement; -allow-volatile-state lifts it.
	for _, allow := range []bool{false, true} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		f := RegisterFlags(fs)
		args := []string{"-tpm-socket", strings.TrimPrefix(opener.Name, "swtpm:"), "-state", cfg.StateDir}
		if allow {
			args = append(args, "-allow-volatile-state")
		}
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		fc, err := f.Config(true, testWriter{t})
		if err != nil {
			t.Fatal(err)
		}
		id, err := Open(fc)
		switch {
		case !allow && !errors.Is(err, ErrVolatileState):
			t.Fatalf("flags without -allow-volatile-state: %v, want ErrVolatileState", err)
		case allow && err != nil:
			t.Fatalf("flags with -allow-volatile-state: %v", err)
		case allow:
			id.Close()
		}
	}
}

// A first boot cut short after the new identity was renamed into place
// and before the TPM was marked (no persistent SRK, no marker) is marked
// at the next start: a later lost /perm is then refused, not taken for a
// first boot that would silently make a different device.
func TestFirstBootCutBeforeMarkingIsMarkedAtNextStart(t *testing.T) {
	_, opener := startTPM(t)
	cfg := testConfig(t, opener)
	id, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	serial, fp := id.Serial(), keyFingerprint(id.Signer().Public())
	id.Close()
	var key keyRecord
	if err := readState(cfg.StateDir, KeyFile, &key); err != nil {
		t.Fatal(err)
	}
	// The TPM as the cut left it: neither the persistent SRK nor the marker.
	withTPMConn(t, opener, func(tt transport.TPM) {
		if _, err := (tpm2.EvictControl{Auth: tpm2.TPMRHOwner, ObjectHandle: tpm2.NamedHandle{Handle: SRKHandle, Name: tpm2.TPM2BName{Buffer: key.SRKName}},
			PersistentHandle: SRKHandle}).Execute(tt); err != nil {
			t.Fatalf("evict the SRK: %v", err)
		}
		pub, err := tpm2.NVReadPublic{NVIndex: MarkerNVIndex}.Execute(tt)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := (tpm2.NVUndefineSpace{AuthHandle: tpm2.TPMRHOwner,
			NVIndex: tpm2.NamedHandle{Handle: MarkerNVIndex, Name: pub.NVName}}).Execute(tt); err != nil {
			t.Fatalf("undefine the marker: %v", err)
		}
		if ev, _, err := earlierIdentity(tt); ev != "" || err != nil {
			t.Fatalf("the TPM still shows the identity (%q, %v)", ev, err)
		}
	})

	var log logBuffer
	c := cfg
	c.Log = &log
	id, err = Open(c)
	if err != nil {
		t.Fatal(err)
	}
	id.Close()
	if !strings.Contains(log.String(), "writing the SRK and the identity marker now") {
		t.Errorf("the start does not say it marked the TPM:\n%s", log.String())
	}
	if m := tpmMarker(t, opener); m == nil || m.Serial != serial || m.KeyFingerprint != fp {
		t.Fatalf("marker %+v, want serial %s key %s", m, serial, fp)
	}
	withTPMConn(t, opener, func(tt transport.TPM) {
		if _, ok := persistentSRK(tt, key.SRKName); !ok {
			t.Fatalf("the SRK is not persistent at %#x again", uint32(SRKHandle))
		}
	})

	// A start that finds everything in place writes nothing.
	log = logBuffer{}
	if id, err = Open(c); err != nil {
		t.Fatal(err)
	}
	id.Close()
	if strings.Contains(log.String(), "does not show this identity") {
		t.Errorf("an ordinary start marked the TPM again:\n%s", log.String())
	}

	if err := os.RemoveAll(cfg.StateDir); err != nil {
		t.Fatal(err)
	}
	id, err = Open(cfg)
	if err == nil {
		id.Close()
		t.Fatal("a lost /perm created a new identity after a first boot cut before marking")
	}
	if !errors.Is(err, ErrEarlierIdentity) || !strings.Contains(err.Error(), serial) {
		t.Fatalf("got %v, want ErrEarlierIdentity naming serial %s", err, serial)
	}
}
