// Command testreport reads `go test -json` on standard input and prints
// what a plain `go test` would (one line per package, and the whole output
// of every failed test), then every skipped test with its reason. It exits
// non-zero when a package failed, when the input held no package result,
// or when a test was skipped that the allow list does not name: `make
// test` installs everything the tests need and runs as root, so a skip
// there means a test silently did not run.
//
//	go test -json ./... | go run ./tools/testreport [-allow FILE] [-v]
//
// With -v every line of output is printed as it comes, as `go test -v`
// would (for long tests, such as the QEMU ones, whose progress matters),
// and the report ends with the count of tests passed, failed and skipped.
//
// The allow list has one "PACKAGE TEST" per line (the test name may end in
// "/*" to allow every subtest of it), '#' starts a comment; each entry says
// why that skip is expected under `make test`.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json's TestEvent).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

type key struct{ pkg, test string }

type report struct {
	out      io.Writer
	verbose  bool             // print all output as it comes (-v)
	tests    [3]int           // tests passed, failed, skipped
	outputs  map[key][]string // a running test's output so far
	skipped  []skip
	failed   []key
	packages int
	pkgFail  int
}

type skip struct {
	key
	why string
}

func newReport(out io.Writer) *report {
	return &report{out: out, outputs: map[key][]string{}}
}

// add takes one event.
func (r *report) add(e event) {
	k := key{e.Package, e.Test}
	if e.Test != "" {
		switch e.Action {
		case "pass":
			r.tests[0]++
		case "fail":
			r.tests[1]++
		case "skip":
			r.tests[2]++
		}
	}
	switch e.Action {
	case "output":
		if r.verbose {
			fmt.Fprint(r.out, e.Output)
			if e.Test != "" {
				r.outputs[k] = append(r.outputs[k], e.Output) // for a skip's reason
			}
			return
		}
		if e.Test == "" {
			// Package-level output: the ok/FAIL summary line, build
			// errors, panics outside a test. Printed as it comes, except
			// the "PASS"/"FAIL" and coverage noise a plain run hides.
			if s := strings.TrimRight(e.Output, "\n"); s != "PASS" && s != "FAIL" && !strings.HasPrefix(s, "=== ") {
				fmt.Fprint(r.out, e.Output)
			}
			return
		}
		r.outputs[k] = append(r.outputs[k], e.Output)
	case "pass":
		if e.Test == "" {
			r.packages++
		}
		delete(r.outputs, k)
	case "skip":
		if e.Test == "" {
			r.packages++ // a package without tests
			return
		}
		r.skipped = append(r.skipped, skip{k, skipReason(r.outputs[k])})
		delete(r.outputs, k)
	case "fail":
		if e.Test == "" {
			r.packages++
			r.pkgFail++
			return
		}
		r.failed = append(r.failed, k)
		if !r.verbose { // -v printed it already
			for _, l := range r.outputs[k] {
				fmt.Fprint(r.out, l)
			}
		}
		delete(r.outputs, k)
	}
}

// skipReason is the message of the t.Skip call: the test's last output
// line that is not a "=== " or "--- SKIP" header (t.Skip ends the test, so
// its message comes last, unless a goroutine of the test logs after it).
func skipReason(lines []string) string {
	var why []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		why = append(why, t)
	}
	if len(why) == 0 {
		return "(no reason given)"
	}
	return why[len(why)-1]
}

// allowed reports whether the allow list names k.
func allowed(allow map[key]bool, k key) bool {
	if allow[k] {
		return true
	}
	for i := strings.LastIndexByte(k.test, '/'); i > 0; i = strings.LastIndexByte(k.test[:i], '/') {
		if allow[key{k.pkg, k.test[:i] + "/*"}] {
			return true
		}
	}
	return false
}

func readAllow(path string) (map[key]bool, error) {
	allow := map[key]bool{}
	if path == "" {
		return allow, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for i, line := range strings.Split(string(b), "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		switch len(f) {
		case 0:
			continue
		case 2:
			allow[key{f[0], f[1]}] = true
		default:
			return nil, fmt.Errorf("%s:%d: want \"PACKAGE TEST\", got %q", path, i+1, strings.TrimSpace(line))
		}
	}
	return allow, nil
}

// finish prints the skips and returns the exit status.
func (r *report) finish(allow map[key]bool) int {
	status := 0
	sort.Slice(r.skipped, func(i, j int) bool {
		a, b := r.skipped[i], r.skipped[j]
		return a.pkg < b.pkg || a.pkg == b.pkg && a.test < b.test
	})
	if r.verbose {
		fmt.Fprintf(r.out, "testreport: tests: %d passed, %d failed, %d skipped\n", r.tests[0], r.tests[1], r.tests[2])
	}
	var unexpected int
	for _, s := range r.skipped {
		mark := "SKIP (allowed)"
		if !allowed(allow, s.key) {
			mark = "SKIP (NOT ALLOWED: the test did not run)"
			unexpected++
		}
		fmt.Fprintf(r.out, "%s %s %s: %s\n", mark, s.pkg, s.test, s.why)
	}
	switch {
	case r.packages == 0:
		fmt.Fprintln(r.out, "testreport: no package result in the input")
		status = 1
	case r.pkgFail > 0 || len(r.failed) > 0:
		fmt.Fprintf(r.out, "testreport: %d of %d packages failed (%d tests)\n", r.pkgFail, r.packages, len(r.failed))
		status = 1
	case unexpected > 0:
		fmt.Fprintf(r.out, "testreport: %d tests skipped that must run under make test (fix their prerequisite, or name them in the allow list with the reason)\n", unexpected)
		status = 1
	default:
		fmt.Fprintf(r.out, "testreport: %d packages passed, %d allowed skips\n", r.packages, len(r.skipped))
	}
	return status
}

func main() {
	allowPath := flag.String("allow", "", "file of allowed skips (\"PACKAGE TEST\" lines)")
	verbose := flag.Bool("v", false, "print all test output as it comes, and count the tests")
	flag.Parse()
	allow, err := readAllow(*allowPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(2)
	}
	r := newReport(os.Stdout)
	r.verbose = *verbose
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// Not an event (go test writes build errors to stderr, but be
			// safe): pass it through.
			fmt.Println(sc.Text())
			continue
		}
		r.add(e)
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "testreport: read:", err)
		os.Exit(2)
	}
	os.Exit(r.finish(allow))
}
