package main

import (
	"bytes"
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

const siteUsage = "usage: otgate site check FILE\n       otgate site apply [-if-missing] [-dir " + site.DefaultStateDir + "] [-boot-config " + bootcfg.Path +
	"] [-identity-socket " + api.DefaultSocket + "] [-no-reload] FILE\n\n" +
	"check validates a site file (YAML) and changes nothing; apply (root, on the gate) validates it, seals the\n" +
	"data key for the next boot, stores it as the applied policy and asks the running services to take it,\n" +
	"one line each: reloaded (with the sessions it ended), not running, or FAILED (exit 1)."

func siteCommand(args []string, out io.Writer) error {
	usage := siteUsage
	if len(args) == 0 {
		return usagef("missing subcommand (check or apply)\n%s", usage)
	}
	op := args[0]
	switch op {
	case "check", "apply":
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(os.Stderr, usage)
		return flag.ErrHelp
	default:
		return usagef("unknown subcommand %q (want check or apply)\n%s", op, usage)
	}
	fs := flag.NewFlagSet("otgate site "+op, flag.ContinueOnError)
	var dir, bootConfig, socket *string
	var ifMissing, noReload *bool
	if op == "apply" {
		dir = fs.String("dir", site.DefaultStateDir, "state directory receiving "+site.AppliedFile)
		ifMissing = fs.Bool("if-missing", false, "do nothing when a policy is already applied (first boot)")
		bootConfig = fs.String("boot-config", bootcfg.Path, "the gate's boot config (absent: not a gate, the policy is only stored)")
		socket = fs.String("identity-socket", api.DefaultSocket, "the identity service, which seals the data key for the next boot")
		noReload = fs.Bool("no-reload", false, "do not ask the running services to take the new policy (they still notice the file)")
	}
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), usage)
		if op == "apply" {
			fmt.Fprintln(fs.Output(), "\nflags:")
			fs.PrintDefaults()
		}
	}
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("%s: want exactly one FILE, got %q\n%s", op, fs.Args(), usage)
	}
	file := fs.Arg(0)
	if op == "check" {
		s, _, err := loadSiteFile(file)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "site: %s is valid: %s\n", file, summary(s))
		return nil
	}
	t := applyTarget{dir: *dir, bootConfig: *bootConfig, socket: *socket,
		initBinary: bootmeasure.InitBinary, cmdline: "/proc/cmdline"}
	if !*noReload {
		sockets := policyreload.DefaultSockets()
		t.services = &sockets
	}
	return applySite(out, file, t, *ifMissing)
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
	before := replacing(path, doc)
	since := time.Now()
	if err := storeAuthorized(out, t, doc); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("%w: apply must run as root on the gate (you are uid %d); nothing applied", err, os.Geteuid())
		}
		return err
	}
	fmt.Fprintf(out, "site: applied %s from %s: %s -> %s\n", s.Name, file, summary(s), path)
	fmt.Fprintf(out, "site: %s\n", before)
	return reloadServices(out, t, doc, since)
}

// replacing says what the policy at path was before doc replaced it.
func replacing(path string, doc []byte) string {
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "no policy was applied before"
	case err != nil:
		return fmt.Sprintf("replaces a policy that could not be read (%v)", err)
	case bytes.Equal(old, doc):
		return "unchanged: the same policy was already applied"
	}
	a, err := site.Decode(old)
	if err != nil {
		return fmt.Sprintf("replaces a corrupt policy (%v)", err)
	}
	return fmt.Sprintf("replaces %s from %s (sha256 %x): %s", a.Site.Name, a.Source, a.SourceSHA256[:6], summary(&a.Site))
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
