// Command otgate-segment is the segment service: it enforces the gate's
// nftables ruleset from a spec file, repairs drift, expires exceptions and
// serves status on a unix socket. It never deletes the ruleset on exit: a
// killed or restarting service leaves the last applied table in force.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/otgate/otgate/internal/ready"
	"github.com/otgate/otgate/services/segment"
	"github.com/otgate/otgate/services/segment/ruleset"
)

func main() {
	specPath := flag.String("spec", "/perm/policy/segment.cbor", "spec file (CBOR, or JSON when it ends in .json)")
	socket := flag.String("socket", segment.DefaultSocket, "status socket path")
	interval := flag.Duration("interval", segment.DefaultInterval, "drift check interval")
	state := flag.String("state", "/perm/segment/would-block.cbor", "would-block history file (empty: memory only)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("")
	if err := run(*specPath, *socket, *state, *interval); err != nil {
		log.Printf("segment: %v", err)
		os.Exit(1)
	}
}

func run(specPath, socket, state string, interval time.Duration) error {
	if interval <= 0 {
		return fmt.Errorf("-interval %s: must be positive", interval)
	}
	spec, err := segment.LoadSpec(specPath)
	if err != nil {
		return err // the kernel keeps its current table (baseline or last good)
	}
	conn, err := ruleset.NewConn(-1)
	if err != nil {
		return err
	}
	svc := segment.New(conn, spec, segment.WithInterval(interval), segment.WithStateFile(state))
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
	err = svc.Run(ctx)
	ln.Close()
	log.Printf("segment: stopping; the ruleset stays in the kernel")
	return err
}
