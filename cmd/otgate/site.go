package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/otgate/otgate/site"
)

func init() {
	register(command{name: "site", summary: "check a site file, or apply it as the gate's policy", run: runSite})
}

func runSite(args []string) error { return siteCommand(args, os.Stdout) }

func siteCommand(args []string, out io.Writer) error {
	usage := "usage: otgate site check FILE\n       otgate site apply [-if-missing] [-dir " + site.DefaultStateDir + "] FILE"
	if len(args) == 0 {
		return fmt.Errorf("missing subcommand\n%s", usage)
	}
	fs := flag.NewFlagSet("site "+args[0], flag.ContinueOnError)
	dir := fs.String("dir", site.DefaultStateDir, "apply: state directory receiving "+site.AppliedFile)
	ifMissing := fs.Bool("if-missing", false, "apply: do nothing when a policy is already applied (first boot)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("want exactly one FILE, got %q\n%s", fs.Args(), usage)
	}
	file := fs.Arg(0)
	switch args[0] {
	case "check":
		s, _, err := loadSiteFile(file)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "site: %s is valid: %s\n", file, summary(s))
		return nil
	case "apply":
		return applySite(out, file, *dir, *ifMissing)
	}
	return fmt.Errorf("unknown subcommand %q\n%s", args[0], usage)
}

// loadSiteFile reads a site file (YAML) or an already compiled policy
// (a name ending in .cbor, as the image carries its default) and returns
// the site and the compiled document to store.
func loadSiteFile(file string) (*site.Site, []byte, error) {
	if strings.HasSuffix(file, ".cbor") {
		doc, err := os.ReadFile(file)
		if err != nil {
			return nil, nil, err
		}
		a, err := site.Decode(doc)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", file, err)
		}
		return &a.Site, doc, nil
	}
	s, src, err := site.Load(file, site.Options{})
	if err != nil {
		var list site.ErrorList
		if errors.As(err, &list) {
			return nil, nil, fmt.Errorf("%s: %d problem(s), nothing applied:\n%w", file, len(list), err)
		}
		return nil, nil, err
	}
	doc, err := site.Compile(s, file, src)
	if err != nil {
		return nil, nil, err
	}
	return s, doc, nil
}

// applySite stores file as the applied policy. With ifMissing an existing
// policy is left alone, even a corrupt one: it is never silently replaced
// by a default (the services refuse it, loudly, until an operator applies
// a good one).
func applySite(out io.Writer, file, dir string, ifMissing bool) error {
	path := filepath.Join(dir, site.AppliedFile)
	if ifMissing {
		_, err := site.LoadApplied(path)
		switch {
		case err == nil:
			fmt.Fprintf(out, "site: %s already holds the applied policy; nothing done\n", path)
			return nil
		case errors.Is(err, site.ErrCorruptPolicy):
			fmt.Fprintf(out, "site: WARNING: %v; NOT replaced by %s: apply a good site file with `otgate site apply FILE`\n", err, file)
			return nil
		case !errors.Is(err, site.ErrNoPolicy):
			return err
		}
	}
	s, doc, err := loadSiteFile(file)
	if err != nil {
		return err
	}
	if err := site.Store(dir, doc); err != nil {
		return err
	}
	fmt.Fprintf(out, "site: applied %s from %s: %s -> %s\n", s.Name, file, summary(s), path)
	return nil
}

func summary(s *site.Site) string {
	return fmt.Sprintf("%d zones, %d assets, %d exceptions", len(s.Zones), len(s.Assets), len(s.Exceptions))
}
