// Package segmentd is the main of otgate-segment, the segment service: it
// enforces the gate's nftables ruleset from a spec file (-spec) or from the
// applied site policy and the boot config (-policy, -boot; re-read on SIGHUP
// and when the file changes), repairs drift, expires exceptions and serves
// status on a unix socket. It owns the namespace's IPv4 forwarding switch:
// on only while the applied ruleset routes (an exception, a monitor zone).
// It never deletes the ruleset on exit: a killed or restarting service
// leaves the last applied table in force.
package segmentd

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/ready"
	"github.com/otgate/otgate/internal/sandbox"
	"github.com/otgate/otgate/services/overlay/alloc"
	"github.com/otgate/otgate/services/segment"
	"github.com/otgate/otgate/services/segment/ruleset"
)

func Main() {
	specPath := flag.String("spec", "/perm/policy/segment.cbor", "spec file (CBOR, or JSON when it ends in .json)")
	socket := flag.String("socket", segment.DefaultSocket, "status socket path")
	interval := flag.Duration("interval", segment.DefaultInterval, "drift check interval")
	state := flag.String("state", "/perm/segment/would-block.cbor", "would-block history file (empty: memory only)")
	policy := flag.String("policy", "", "applied site policy (CBOR, site.Store) to enforce instead of -spec, with the baseline of -boot")
	boot := flag.String("boot", bootcfg.Path, "-policy: boot config naming the gate's uplink and downlinks")
	poll := flag.Duration("poll", 2*time.Second, "-policy: how often to check the policy file for a change")
	overlayState := flag.String("overlay-state", alloc.DefaultStatePath, "the overlay allocator's table, read (never written) to show each asset's endpoint (empty: pinned endpoints only)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("")
	// Root for its files; of root's capabilities it keeps CAP_NET_ADMIN
	// alone: nftables, conntrack and the forwarding sysctls
	// (internal/sandbox).
	if err := sandbox.LockDown(unix.CAP_NET_ADMIN); err != nil {
		log.Printf("segment: %v", err)
		os.Exit(1)
	}
	// Confined to its files (confinement): a compromised segment cannot
	// read another service's state or the TPM, nor change the policy,
	// /etc, the binaries or any sysctl but its own.
	files, err := confine(paths{Policy: *policy, Boot: *boot, Spec: *specPath, State: *state, Socket: *socket,
		OverlayState: *overlayState, Forwarding: segment.ForwardingSysctl})
	if err != nil {
		fmt.Fprintf(os.Stderr, "otgate-segment: %v: refusing to run unconfined\n", err)
		os.Exit(1)
	}
	log.Printf("segment: files confined: %s", files)
	var src *policySource
	if *policy != "" {
		var err error
		if src, err = newPolicySource(*policy, *boot); err != nil {
			log.Printf("segment: %v", err)
			os.Exit(1)
		}
	}
	if err := run(src, *specPath, *socket, *state, *overlayState, *interval, *poll); err != nil {
		log.Printf("segment: %v", err)
		os.Exit(1)
	}
}

func run(src *policySource, specPath, socket, state, overlayState string, interval, poll time.Duration) error {
	if interval <= 0 {
		return fmt.Errorf("-interval %s: must be positive", interval)
	}
	if src != nil && poll <= 0 {
		return fmt.Errorf("-poll %s: must be positive", poll)
	}
	var spec *ruleset.Spec
	var sha [32]byte
	var err error
	if src != nil {
		var what string
		if spec, sha, what, err = src.load(); err != nil {
			return err // the kernel keeps its current table (baseline or last good)
		}
		log.Printf("segment: enforcing %s", what)
	} else if spec, err = segment.LoadSpec(specPath); err != nil {
		return err // the kernel keeps its current table (baseline or last good)
	}
	conn, err := ruleset.NewConn(-1)
	if err != nil {
		return err
	}
	// The service owns IPv4 forwarding in its namespace (the gate's): on
	// only while the applied spec routes (exceptions, monitor zones), set
	// after each apply.
	svc := segment.New(conn, spec, segment.WithInterval(interval), segment.WithStateFile(state),
		segment.WithOverlayState(overlayState), segment.WithPolicySHA256(sha))
	if err := svc.Start(); err != nil {
		return err
	}
	ln, err := segment.ListenSocket(socket)
	if err != nil {
		return err
	}
	go func() {
		if err := svc.Serve(ln); err != nil {
			log.Printf("segment: status socket: %v", err)
		}
	}()
	if err := ready.Notify(); err != nil {
		log.Printf("segment: notify init: %v", err)
	}
	log.Printf("segment: ready: %d assets, %d exceptions, status on %s", len(spec.Assets), len(spec.Active(time.Now())), socket)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if src != nil {
		go watchPolicy(ctx, src, svc, poll)
	}
	err = svc.Run(ctx)
	ln.Close()
	log.Printf("segment: stopping; the ruleset stays in the kernel")
	return err
}
