package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/services/identity/bootmeasure"
)

// Paths of the measured configuration.
const (
	// appliedPolicy is the compiled site policy the services enforce.
	appliedPolicy = "/perm/policy/applied.cbor"
	// defaultPolicy is the image's compiled default site policy: the
	// "policy" service row stores it as appliedPolicy on a first boot.
	defaultPolicy = "/etc/otgate/site.cbor"
)

// hookMeasureExtra mixes a string into the boot measurement (test images
// only), so a test can boot "another image" with the same binaries.
const hookMeasureExtra = "otgate.test.measure_extra"

// measurement is the digest of what this boot runs. Each part is framed
// (a label, its length and its sha256) so no two different inputs give the
// same stream:
//
//	init      the running PID 1 binary (/proc/self/exe)
//	service   each distinct service binary, in service table order
//	bootcfg   /etc/otgate/boot.cbor (board, modules, service table; its
//	          ImageID covers every file of the initramfs)
//	policy    the applied policy, or, when none is applied yet, the image's
//	          default policy that the "policy" row is about to store (the
//	          same bytes), so a first boot and the boots after it measure
//	          the same
//	extra     the test hook's string (test images only)
type measurement struct {
	h     hash.Hash
	parts []string
}

func newMeasurement() *measurement { return &measurement{h: sha256.New()} }

func (m *measurement) add(label string, data []byte) {
	sum := sha256.Sum256(data)
	fmt.Fprintf(m.h, "%s %d %x\n", label, len(data), sum)
	m.parts = append(m.parts, label)
}

func (m *measurement) addFile(label, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fh := sha256.New()
	n, err := io.Copy(fh, f)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	fmt.Fprintf(m.h, "%s %d %x\n", label, n, fh.Sum(nil))
	m.parts = append(m.parts, label+" "+path)
	return nil
}

func (m *measurement) sum() [32]byte {
	var d [32]byte
	copy(d[:], m.h.Sum(nil))
	return d
}

// measureBoot computes the boot measurement. root maps appliance paths
// (a development host's -root); self is the running init binary.
func measureBoot(cfg *bootcfg.Config, root, self, configPath string, extra string) (*measurement, error) {
	m := newMeasurement()
	if err := m.addFile("init", self); err != nil {
		return nil, fmt.Errorf("measure init binary: %w", err)
	}
	seen := map[string]bool{}
	for _, s := range cfg.Services {
		if seen[s.Binary] {
			continue
		}
		seen[s.Binary] = true
		if err := m.addFile("service", s.Binary); err != nil {
			return nil, fmt.Errorf("measure service %s: %w", s.Name, err)
		}
	}
	if err := m.addFile("bootcfg", configPath); err != nil {
		return nil, fmt.Errorf("measure boot config: %w", err)
	}
	policy := filepath.Join(root, appliedPolicy)
	if _, err := os.Stat(policy); errors.Is(err, os.ErrNotExist) {
		policy = filepath.Join(root, defaultPolicy)
	}
	if err := m.addFile("policy", policy); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("measure policy: %w", err)
	}
	if extra != "" {
		m.add("extra", []byte(extra))
	}
	return m, nil
}

// measure extends the boot measurement PCR once, before any service
// starts, when the board's TPM device exists. It returns the hex digest
// extended ("" when nothing was). A failure is logged and boot goes on:
// the PCR then differs from the sealed value, so the identity service
// comes up in quarantine (fail closed).
func (in *initProc) measure(configPath string) string {
	log := in.log
	dev := in.cfg.TPM
	if dev == "" {
		log.Printf("measured boot: the board names no TPM; boot not measured")
		return ""
	}
	if _, err := os.Stat(in.path(dev)); err != nil {
		log.Printf("measured boot: no TPM at %s (%v); boot not measured", dev, err)
		return ""
	}
	extra := ""
	if in.cfg.TestHooks {
		if v, ok := in.cmdline[hookMeasureExtra]; ok {
			extra = v
			log.Printf("test hook: %s=%q mixed into the boot measurement", hookMeasureExtra, v)
		}
	}
	m, err := measureBoot(in.cfg, in.root, "/proc/self/exe", configPath, extra)
	if err != nil {
		log.Printf("MEASURED BOOT ERROR: %v; PCR %d not extended (the identity service will see the difference)", err, bootmeasure.PCR)
		return ""
	}
	d := m.sum()
	if err := bootmeasure.ExtendDevice(in.path(dev), d); err != nil {
		log.Printf("MEASURED BOOT ERROR: %v; the identity service will see the difference", err)
		return ""
	}
	digest := hex.EncodeToString(d[:])
	log.Printf("measured boot into PCR %d (%s)", bootmeasure.PCR, digest[:16])
	return digest
}
