package segmentd

import (
	"context"
	"errors"
	"fmt"
	"log"
	"syscall"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/policywatch"
	"github.com/otgate/otgate/internal/ready"
	"github.com/otgate/otgate/services/segment"
	"github.com/otgate/otgate/services/segment/baseline"
	"github.com/otgate/otgate/services/segment/ruleset"
	"github.com/otgate/otgate/services/segment/sitespec"
	"github.com/otgate/otgate/site"
)

// policySource builds the desired state from the applied site policy on
// top of the gate's baseline (from the boot config, as init installed it).
type policySource struct {
	path string
	base ruleset.BaselineSpec
	file policywatch.File
}

func newPolicySource(policyPath, bootPath string) (*policySource, error) {
	cfg, err := bootcfg.Load(bootPath)
	if err != nil {
		return nil, fmt.Errorf("-boot: %w", err)
	}
	base := baseline.FromBoot(cfg)
	if err := base.Validate(); err != nil {
		return nil, fmt.Errorf("-boot %s: baseline: %w", bootPath, err)
	}
	return &policySource{path: policyPath, base: base, file: policywatch.File{Path: policyPath}}, nil
}

// load reads the policy. No applied policy yet is not an error: the spec
// is then the baseline alone (no asset reachable).
// The digest is the site file's SHA-256 (zero for the baseline alone).
func (p *policySource) load() (*ruleset.Spec, [32]byte, string, error) {
	p.file.Mark()
	applied, err := site.LoadApplied(p.path)
	if errors.Is(err, site.ErrNoPolicy) {
		return &ruleset.Spec{BaselineSpec: p.base}, [32]byte{}, "no applied policy yet: baseline only, no asset reachable", nil
	}
	if err != nil {
		return nil, [32]byte{}, "", err
	}
	spec, err := sitespec.Spec(&applied.Site, p.base)
	if err != nil {
		return nil, [32]byte{}, "", fmt.Errorf("policy %s (from %s): %w", p.path, applied.Source, err)
	}
	return spec, applied.SourceSHA256, fmt.Sprintf("policy %s from %s (sha256 %x)", p.path, applied.Source, applied.SourceSHA256[:6]), nil
}

// watchPolicy re-reads the policy on SIGHUP and when the file changes, and
// applies it. A policy that does not load or fit changes nothing: the
// kernel keeps the last good table, and init hears the service is
// unhealthy until a good policy arrives.
func watchPolicy(ctx context.Context, p *policySource, svc *segment.Service, poll time.Duration) {
	loop := policywatch.Loop{File: &p.file, Poll: poll, Reload: policywatch.OnSignal(ctx, syscall.SIGHUP)}
	bad := false
	err := loop.Run(ctx, func(trigger policywatch.Trigger) {
		why := trigger.String() // "policy file changed"
		if trigger == policywatch.Reload {
			why = "reload (SIGHUP)"
		}
		spec, sha, what, err := p.load()
		if err == nil {
			err = svc.SetPolicySpec(spec, sha, why)
		}
		if err != nil {
			log.Printf("segment: %s: %v; nothing changed, the previous ruleset stays", why, err)
			if !bad {
				_ = ready.Unhealthy("policy: " + err.Error())
				bad = true
			}
			return
		}
		log.Printf("segment: %s: now enforcing %s: %d assets, %d exceptions", why, what, len(spec.Assets), len(spec.Active(time.Now())))
		if bad {
			_ = ready.Healthy()
			bad = false
		}
	})
	if err != nil {
		log.Printf("segment: policy watch stopped: %v", err)
	}
}
