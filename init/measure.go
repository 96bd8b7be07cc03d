package main

import (
	"encoding/hex"
	"os"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/services/identity/bootmeasure"
)

// Paths of the measured configuration (bootmeasure owns them: `otgate site
// apply` predicts the next boot's measurement with the same function).
const (
	appliedPolicy    = bootmeasure.AppliedPolicy
	defaultPolicy    = bootmeasure.DefaultPolicy
	hookMeasureExtra = bootmeasure.HookMeasureExtra
)

// measureBoot computes the boot measurement with bootmeasure.Compute (see
// there for the inputs and their order). root maps appliance paths (a
// development host's -root); self is the running init binary.
func measureBoot(cfg *bootcfg.Config, root, self, configPath string, extra string, pre *bootmeasure.Prehashed) (*bootmeasure.Measurement, error) {
	return bootmeasure.Compute(bootmeasure.Inputs{
		Init: self, Config: cfg, ConfigPath: configPath,
		Policy: bootmeasure.PolicyFile(root), Extra: extra, Prehashed: pre,
	})
}

// prehash starts hashing init's own binary and the service binaries, the
// bulk of the boot measurement, so that it runs beside module loading on
// a machine with more than one CPU (each distinct file in its own
// goroutine: init's binary and the multi-call one on two CPUs).
func prehash(self string, cfg *bootcfg.Config) *bootmeasure.Prehashed {
	paths := []string{self}
	for _, s := range cfg.Services {
		paths = append(paths, s.Binary)
	}
	return bootmeasure.Prehash(paths...)
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
	start := time.Now()
	m, err := measureBoot(in.cfg, in.root, "/proc/self/exe", configPath, extra, in.prehashed)
	if err != nil {
		log.Printf("MEASURED BOOT ERROR: %v; PCR %d not extended (the identity service will see the difference)", err, bootmeasure.PCR)
		return ""
	}
	d := m.Digest
	if err := bootmeasure.ExtendDevice(in.path(dev), d); err != nil {
		log.Printf("MEASURED BOOT ERROR: %v; the identity service will see the difference", err)
		return ""
	}
	digest := hex.EncodeToString(d[:])
	log.Printf("measured boot into PCR %d (%s, %s)", bootmeasure.PCR, digest[:16], secs(time.Since(start)))
	return digest
}
