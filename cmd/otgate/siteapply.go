package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/services/identity/api"
	"github.com/otgate/otgate/services/identity/bootmeasure"
)

// storeAuthorized is an authorized configuration change: `otgate site
// apply` run by root on a running gate whose identity is healthy. The
// applied policy is part of the boot measurement, so storing it alone would
// put the next boot in quarantine. Instead, in this order:
//
//  1. compute the measurement the next boot will extend, with the new
//     policy, through bootmeasure.Compute (the function init uses);
//  2. ask the identity service (root only) to seal the data key it holds
//     to the PCR values that boot will have; it writes seal-next.cbor
//     durably and keeps seal.cbor;
//  3. store the new policy atomically.
//
// A power cut before 3 completes leaves the old policy, which the current
// slot unseals; after it, the new policy, which the next slot unseals. An
// offline edit of the policy gets no slot and quarantines the gate.
//
// Nothing is changed when the gate is in quarantine, the identity service
// cannot be reached, or the prediction fails. Off a gate (no boot config)
// or on a board without a TPM the policy is only stored.
func storeAuthorized(out io.Writer, t applyTarget, doc []byte) error {
	cfg, err := bootcfg.Load(t.bootConfig)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(out, "site: no boot config at %s: not running on a gate, the policy is stored without sealing for the next boot\n", t.bootConfig)
		return storeDoc(t, doc)
	}
	if err != nil {
		return fmt.Errorf("site: %w; nothing applied", err)
	}
	if cfg.TPM == "" {
		fmt.Fprintf(out, "site: the board names no TPM (boot not measured): the policy is stored without sealing for the next boot\n")
		return storeDoc(t, doc)
	}
	if uid := os.Geteuid(); uid != 0 {
		return fmt.Errorf("site: apply on the gate must run as root (uid %d): the identity service seals the data key for the next boot only for root; nothing applied", uid)
	}
	c, err := api.Dial(t.socket)
	if err != nil {
		return fmt.Errorf("site: the identity service is unreachable (%w); nothing applied: without it the new policy would change the next boot's measurement and put the gate in quarantine", err)
	}
	defer c.Close()
	st, err := c.Status()
	if err != nil {
		return fmt.Errorf("site: identity status: %w; nothing applied", err)
	}
	if st.Quarantine {
		return fmt.Errorf("site: the gate is in quarantine (%s); nothing applied: a policy change is authorized only on a healthy gate; recover first (%s)", st.Reason, st.Remedy)
	}
	cmdline, err := os.ReadFile(t.cmdline)
	if err != nil && cfg.TestHooks {
		return fmt.Errorf("site: read kernel command line: %w; nothing applied", err)
	}
	m, err := bootmeasure.Compute(bootmeasure.Inputs{
		Init: t.initBinary, Config: cfg, ConfigPath: t.bootConfig,
		PolicyDoc: doc, Extra: bootmeasure.ExtraFromCmdline(cfg, string(cmdline)),
	})
	if err != nil {
		return fmt.Errorf("site: predict the next boot's measurement: %w; nothing applied", err)
	}
	if err := c.SealNextBoot(m.Digest); err != nil {
		return fmt.Errorf("site: seal the data key for the next boot: %w; nothing applied", err)
	}
	if err := storeDoc(t, doc); err != nil {
		return fmt.Errorf("%w (the data key is sealed for this policy too; the gate still boots the old one)", err)
	}
	fmt.Fprintf(out, "site: data key sealed for the next boot (measurement %x); the new policy is measured from the next boot on\n", m.Digest[:8])
	return nil
}
