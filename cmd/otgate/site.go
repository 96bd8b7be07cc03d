package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/otgate/otgate/internal/atomicfile"
	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/policyreload"
	"github.com/otgate/otgate/services/identity/api"
	"github.com/otgate/otgate/services/identity/bootmeasure"
	"github.com/otgate/otgate/site"
)

func init() {
	register(command{name: "site", summary: "check a site file, or apply it as the gate's policy", run: runSite})
}

func runSite(args []string) error { return siteCommand(args, os.Stdout) }

func siteCommand(args []string, out io.Writer) error {
	usage := "usage: otgate site check FILE\n       otgate site apply [-if-missing] [-dir " + site.DefaultStateDir + "] [-boot-config " + bootcfg.Path + "] [-identity-socket " + api.DefaultSocket + "] [-no-reload] FILE"
	if len(args) == 0 {
		return fmt.Errorf("missing subcommand\n%s", usage)
	}
	fs := flag.NewFlagSet("site "+args[0], flag.ContinueOnError)
	dir := fs.String("dir", site.DefaultStateDir, "apply: state directory receiving "+site.AppliedFile)
	ifMissing := fs.Bool("if-missing", false, "apply: do nothing when a policy is already applied (first boot)")
	bootConfig := fs.String("boot-config", bootcfg.Path, "apply: the gate's boot config (absent: not a gate, the policy is only stored)")
	socket := fs.String("identity-socket", api.DefaultSocket, "apply: the identity service, which seals the data key for the next boot")
	noReload := fs.Bool("no-reload", false, "apply: do not ask the running services to take the new policy (they still notice the file)")
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
		t := applyTarget{dir: *dir, bootConfig: *bootConfig, socket: *socket,
			initBinary: bootmeasure.InitBinary, cmdline: "/proc/cmdline"}
		if !*noReload {
			sockets := policyreload.DefaultSockets()
			t.services = &sockets
		}
		return applySite(out, file, t, *ifMissing)
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

// applyTarget is where and how an apply stores the policy.
type applyTarget struct {
	dir        string // policy state directory (site.AppliedFile in it)
	bootConfig string // the gate's boot config; absent: not a gate
	initBinary string // the init binary the next boot measures
	cmdline    string // kernel command line file (test hook of the measurement)
	socket     string // identity service socket
	// storeHook is a crash-test hook (nil in production).
	storeHook atomicfile.Hook
	// services are the running services told about a new policy after
	// it is stored (nil: none, as with -no-reload); reloadWait bounds the
	// wait for the file-watching ones (0: policyreload.DefaultWait).
	services   *policyreload.Sockets
	reloadWait time.Duration
}

// applySite stores file as the applied policy. With ifMissing an existing
// policy is left alone, even a corrupt one: it is never silently replaced
// by a default (the services refuse it, loudly, until an operator applies
// a good one); -if-missing stores the image's default, which the boot
// already measured, so it needs no resealing. Otherwise, on a gate, the
// apply is an authorized configuration change (storeAuthorized).
func applySite(out io.Writer, file string, t applyTarget, ifMissing bool) error {
	dir := t.dir
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
	if ifMissing {
		if err := storeDoc(t, doc); err != nil {
			return err
		}
		fmt.Fprintf(out, "site: applied %s from %s: %s -> %s\n", s.Name, file, summary(s), path)
		return nil
	}
	since := time.Now()
	if err := storeAuthorized(out, t, doc); err != nil {
		return err
	}
	fmt.Fprintf(out, "site: applied %s from %s: %s -> %s\n", s.Name, file, summary(s), path)
	return reloadServices(out, t, doc, since)
}

func summary(s *site.Site) string {
	return fmt.Sprintf("%d zones, %d assets, %d exceptions", len(s.Zones), len(s.Assets), len(s.Exceptions))
}

// storeDoc validates doc and writes it atomically as the applied policy.
func storeDoc(t applyTarget, doc []byte) error {
	if t.storeHook == nil {
		return site.Store(t.dir, doc)
	}
	if _, err := site.Decode(doc); err != nil {
		return fmt.Errorf("site: refusing to store: %w", err)
	}
	if err := os.MkdirAll(t.dir, 0o750); err != nil {
		return fmt.Errorf("site: %w", err)
	}
	if err := atomicfile.WriteHooked(filepath.Join(t.dir, site.AppliedFile), doc, 0o640, t.storeHook); err != nil {
		return fmt.Errorf("site: %w", err)
	}
	return nil
}
