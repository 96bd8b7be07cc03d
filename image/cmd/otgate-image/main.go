// Command otgate-image builds the appliance image of one board into
// out/<board>/ (see package image), or with -repro-check builds it twice
// from copies of the source tree in different directories and compares the
// bytes. An image that is not production goes to out/<board>-<variant>/
// (-debug: out/<board>-debug/), never over the production image; with
// -out DIR any image goes to DIR/<board>/.
//
//	otgate-image -board NAME [-debug] [-test] [-out DIR] [-repro-check] [-quiet]
//
// Progress lines go to stderr unless -quiet or CI=true.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/otgate/otgate/board"
	"github.com/otgate/otgate/image"
)

func main() {
	boardName := flag.String("board", "", "board to build (one of: "+strings.Join(board.Names(), ", ")+")")
	debug := flag.Bool("debug", false, "add u-root's shell and core commands for the serial console")
	test := flag.Bool("test", false, "add the test-only services and enable init's test hooks")
	demo := flag.Bool("demo", false, "DEMO ONLY (make run): demo site and a demo user with generated credentials ("+image.DemoCredentialsFile+" in the image directory)")
	out := flag.String("out", "", "output directory; the image goes to <out>/<board>/ (default: "+image.DefaultOutDir+"/<board>/ for a production image, "+image.DefaultOutDir+"/<board>-<variant>/ for any other, e.g. -debug: "+image.DefaultOutDir+"/<board>-debug/)")
	repro := flag.Bool("repro-check", false, "build twice in different directories and compare every artifact")
	quiet := flag.Bool("quiet", os.Getenv("CI") == "true", "no progress lines (default true when CI=true)")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "otgate-image: unexpected arguments %q\n", flag.Args())
		flag.Usage()
		os.Exit(2)
	}
	if *boardName == "" {
		fmt.Fprintln(os.Stderr, "otgate-image: -board is required")
		flag.Usage()
		os.Exit(2)
	}
	if *demo && *repro {
		fmt.Fprintln(os.Stderr, "otgate-image: -demo images are not reproducible (new demo credentials every build): drop -repro-check or -demo")
		os.Exit(2)
	}
	outSet := false
	flag.Visit(func(f *flag.Flag) { outSet = outSet || f.Name == "out" })
	if err := run(*boardName, *debug, *test, *demo, *out, outSet, *repro, *quiet); err != nil {
		fmt.Fprintf(os.Stderr, "otgate-image: %v\n", err)
		os.Exit(1)
	}
}

func run(boardName string, debug, test, demo bool, out string, outSet, repro, quiet bool) error {
	b, err := board.Lookup(boardName)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := []image.Option{image.WithDebug(debug), image.WithTestServices(test), image.WithDemo(demo)}
	if outSet {
		opts = append(opts, image.WithOutDir(out))
	}
	if !quiet {
		opts = append(opts, image.WithLog(os.Stderr))
	}
	if repro {
		m, err := image.ReproCheck(ctx, b, opts...)
		if err != nil {
			return err
		}
		if quiet {
			for _, a := range m.Artifacts {
				fmt.Printf("%s  %s\n", a.SHA256, a.Name)
			}
		}
		fmt.Printf("repro-check %s: reproducible (image %s)\n", b.Name, m.ImageID)
		return nil
	}
	dir, err := image.ImageDir(b, opts...)
	if err != nil {
		return err
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, dir); err == nil && filepath.IsLocal(rel) {
			dir = rel
		}
	}
	m, err := image.Build(ctx, b, opts...)
	if err != nil {
		return err
	}
	if m.Variant != image.Production {
		fmt.Printf("%s: %s image %s (NOT FOR PRODUCTION)\n", dir, strings.ToUpper(m.Variant), m.ImageID)
		return nil
	}
	fmt.Printf("%s: image %s\n", dir, m.ImageID)
	return nil
}
