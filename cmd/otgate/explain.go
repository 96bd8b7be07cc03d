package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
	_ "time/tzdata" // grants name IANA zones; the appliance image has no zoneinfo files

	"github.com/otgate/otgate/policy"
	"github.com/otgate/otgate/site"
)

func init() {
	register(command{name: "explain", summary: "who can reach an asset now, and why (explain [USER] ASSET)",
		run: func(args []string) error { return runExplain(args, os.Stdout) }})
}

const explainUsage = `usage: otgate explain [USER] ASSET [--at RFC3339] [--site site.yaml | --applied FILE] [--json]

  otgate explain plc-tank          every user who can reach plc-tank now: protocol, grant, until when
  otgate explain alice plc-tank    alice's decision for each protocol of plc-tank, and every grant
                                   with why it applies or not

The policy is read from --site (a site file, validated first) or else from
the applied policy (--applied, default ` + site.DefaultStateDir + `/` + site.AppliedFile + `)`

func runExplain(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("otgate explain", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	atFlag := fs.String("at", "", "decide at this time (RFC 3339, e.g. 2026-12-02T10:00:00+01:00; default now)")
	sitePath := fs.String("site", "", "site file to read (default: the applied policy)")
	applied := fs.String("applied", filepath.Join(site.DefaultStateDir, site.AppliedFile), "applied (compiled) policy to read")
	asJSON := fs.Bool("json", false, "print JSON")
	// Flags may come before, between or after the names.
	var names []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "%s\n\nflags:\n", explainUsage)
			fs.SetOutput(os.Stderr)
			fs.PrintDefaults()
			return err
		}
		if err != nil {
			return usagef("%v\n%s", err, explainUsage)
		}
		if fs.NArg() == 0 {
			break
		}
		names = append(names, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch {
	case len(names) == 0:
		return usagef("missing ASSET\n%s", explainUsage)
	case len(names) > 2:
		return usagef("unexpected argument %q (want [USER] ASSET)\n%s", names[2], explainUsage)
	}
	setApplied := false
	fs.Visit(func(f *flag.Flag) { setApplied = setApplied || f.Name == "applied" })
	if setApplied && *sitePath != "" {
		return usagef("--site and --applied: give one\n%s", explainUsage)
	}
	at := time.Now()
	if *atFlag != "" {
		t, err := time.Parse(time.RFC3339, *atFlag)
		if err != nil {
			return usagef("--at %q: want RFC 3339, e.g. 2026-12-02T10:00:00+01:00", *atFlag)
		}
		at = t
	}
	p, err := loadPolicy(*sitePath, *applied)
	if err != nil {
		return err
	}
	if len(names) == 1 {
		reach, err := p.WhoCanReach(names[0], at)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(out, reach)
		}
		printReach(out, names[0], at, reach)
		return nil
	}
	e, err := p.Explain(names[0], names[1], at)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(out, e)
	}
	printExplanation(out, e)
	return nil
}

func loadPolicy(sitePath, appliedPath string) (*policy.Policy, error) {
	var s *site.Site
	if sitePath != "" {
		loaded, _, err := site.Load(sitePath, site.Options{})
		if err != nil {
			return nil, err
		}
		s = loaded
	} else {
		a, err := site.LoadApplied(appliedPath)
		if err != nil {
			return nil, fmt.Errorf("%w (give a site file with --site)", err)
		}
		s = &a.Site
	}
	return policy.Compile(s)
}

func writeJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func until(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "no scheduled end"
	}
	return "until " + t.In(loc).Format(time.RFC3339)
}

func printReach(out io.Writer, asset string, at time.Time, reach []policy.Reach) {
	fmt.Fprintf(out, "who can reach %s at %s:\n", asset, at.Format(time.RFC3339))
	if len(reach) == 0 {
		fmt.Fprintln(out, "  nobody")
		return
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, r := range reach {
		from := ""
		if len(r.SourceNetworks) > 0 {
			nets := make([]string, len(r.SourceNetworks))
			for i, n := range r.SourceNetworks {
				nets[i] = n.String()
			}
			from = "only from " + strings.Join(nets, ", ")
		}
		line := fmt.Sprintf("  %s\t%s\tgrant %s\t%s", r.User, r.Protocol, r.Rule, until(r.Until, at.Location()))
		if from != "" {
			line += "\t" + from
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}

func printExplanation(out io.Writer, e *policy.Explanation) {
	fmt.Fprintf(out, "%s -> %s at %s\n", e.User, e.Asset, e.At.Format(time.RFC3339))
	for _, pd := range e.Decisions {
		d := pd.Decision
		verdict := "DENY"
		if d.Allow {
			verdict = "ALLOW"
		}
		extra := ""
		if d.MaxSession > 0 {
			extra = fmt.Sprintf(", sessions at most %s", d.MaxSession)
		}
		if d.Allow && len(e.SourceNetworks) > 0 {
			nets := make([]string, len(e.SourceNetworks))
			for i, n := range e.SourceNetworks {
				nets[i] = n.String()
			}
			extra += ", only from " + strings.Join(nets, ", ")
		}
		fmt.Fprintf(out, "  %s: %s by %s, %s%s\n    %s\n", pd.Protocol, verdict, d.Rule, until(d.Until, e.At.Location()), extra, d.Reason)
		if len(pd.Modbus) > 0 {
			fmt.Fprintln(out, "    modbus rules (a request is judged by the line listing its unit):")
			for _, l := range pd.Modbus {
				fmt.Fprintf(out, "      %s\n", l)
			}
		}
	}
	fmt.Fprintln(out, "grants considered:")
	for _, c := range e.Grants {
		state := "does not match"
		switch {
		case c.Active:
			state = "applies now"
		case c.Matches:
			state = "matches, not now"
		}
		fmt.Fprintf(out, "  %s (%s): %s\n    %s\n", c.Grant, c.Effect, state, c.Why)
	}
	fmt.Fprintln(out, "(source networks are checked when connecting; explain does not know the source)")
}
