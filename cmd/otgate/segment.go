//go:build linux

package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/otgate/otgate/services/segment"
)

func init() {
	register(command{name: "segment", summary: "show the gate's microsegments and the monitor-mode report", run: runSegment})
}

const segmentUsage = "usage: otgate segment [-socket PATH] [-json] show|report|status\n\n" +
	"  show    each asset: zone, mode, overlay endpoint, who may reach it\n" +
	"  report  monitor zones: the flows enforce mode would have blocked\n" +
	"  status  the ruleset in force, forwarding, exceptions, recent events;\n" +
	"          exit 1 when segmentation is DEGRADED (what is wrong on stderr)"

func runSegment(args []string) error {
	fs := flag.NewFlagSet("otgate segment", flag.ContinueOnError)
	socket := fs.String("socket", segment.DefaultSocket, "segment service status socket")
	asJSON := fs.Bool("json", false, "print JSON instead of words")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s\n\nflags:\n", segmentUsage)
		fs.PrintDefaults()
	}
	// Flags may come before or after the subcommand.
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 0:
		return usagef("missing subcommand (show, report or status)\n%s", segmentUsage)
	case pos[0] != segment.OpShow && pos[0] != segment.OpReport && pos[0] != segment.OpStatus:
		return usagef("unknown subcommand %q (want show, report or status)\n%s", pos[0], segmentUsage)
	case len(pos) > 1:
		return usagef("%s: unexpected argument %q\n%s", pos[0], pos[1], segmentUsage)
	}
	op := pos[0]
	resp, err := segment.Query(*socket, op)
	if err != nil {
		return socketError(err, "the segment service", *socket)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		switch op {
		case segment.OpShow:
			return enc.Encode(resp.Show)
		case segment.OpReport:
			return enc.Encode(resp.Report)
		default:
			if err := enc.Encode(resp.Status); err != nil {
				return err
			}
			if resp.Status != nil && resp.Status.Degraded != "" {
				return fmt.Errorf("segmentation is DEGRADED: %s", resp.Status.Degraded)
			}
			return nil
		}
	}
	switch op {
	case segment.OpShow:
		for _, a := range resp.Show {
			ep := "no overlay endpoint yet"
			if a.Endpoint != "" {
				ep = "endpoint " + a.Endpoint
			}
			fmt.Printf("%s (%s, zone %s, %s mode, %s)\n", a.Asset, a.Address, a.Zone, a.Mode, ep)
			for _, r := range a.Reachers {
				fmt.Printf("  reachable by %s\n", r)
			}
		}
		fmt.Println("everything else toward the OT side is dropped; the gate routes nothing but exceptions and monitor zones")
		if resp.Note != "" {
			fmt.Printf("note: %s\n", resp.Note)
		}
	case segment.OpReport:
		if len(resp.Report) == 0 {
			fmt.Println("no would-have-blocked flows")
		}
		for _, r := range resp.Report {
			fmt.Printf("%s  %d packets %d bytes  first %s  last %s\n", r.Flow, r.Packets, r.Bytes,
				r.FirstSeen.UTC().Format(time.RFC3339Nano), r.LastSeen.UTC().Format(time.RFC3339Nano))
		}
	default:
		st := resp.Status
		fmt.Printf("applied %s (%d applies, %d drift repairs)\n%s\nIPv4 forwarding %s\n", st.Applied.UTC().Format(time.RFC3339), st.Applies, st.Drifts, st.Ruleset, st.Forwarding)
		if st.PolicySHA256 != ([32]byte{}) {
			fmt.Printf("site policy sha256 %x\n", st.PolicySHA256)
		}
		if st.Degraded != "" {
			fmt.Printf("DEGRADED: %s\n", st.Degraded)
		}
		for _, e := range st.Exceptions {
			fmt.Printf("exception %s: %s, %d packets, expires in %s\n", e.ID, e.Flow, e.Packets, e.Expires)
		}
		for _, e := range st.Events {
			fmt.Printf("%s %s: %s\n", e.Time.UTC().Format(time.RFC3339), e.Kind, e.Message)
		}
		if st.Degraded != "" {
			// As otgate status: monitoring scripts rely on the exit status.
			return fmt.Errorf("segmentation is DEGRADED: %s", st.Degraded)
		}
	}
	return nil
}
