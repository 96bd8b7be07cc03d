// Command testreport reads `go test -json` on standard input and prints
// what a plain `go test` would (one line per package, and the whole output
// of every failed test), then every skipped test with its reason. It exits
// non-zero when a package failed, when the input held no package result,
// or when a test was skipped that the allow list does not name: `make
// test` installs everything the tests need and runs as root, so a skip
// there means a test silently did not run.
//
//	go test -json ./... | go run ./tools/testreport [-allow FILE] [-v]
//	{ go test -json ./...; echo $? >F; } | go run ./tools/testreport -exit-file F
//
// With -exit-file, go test's exit status (written to the file before the
// output ends) must be 0 unless a test failed: it fails the report when
// go test failed otherwise.
//
// With -v every line of output is printed as it comes, as `go test -v`
// would (for long tests, such as the QEMU ones, whose progress matters),
// and the report ends with the count of tests passed, failed and skipped.
//
// With -rerun-on REGEX, a run whose only failures are tests whose output
// (their own or a subtest's) matches REGEX runs those tests once more with
// `go test -json -run '^(A|B)$' [-rerun-flags] PACKAGES`, says so, and
// its status is the second run's. `make test` names the guest kernel's
// soft lockup report with it: under QEMU's TCG on this host a guest CPU
// has been seen spinning in the kernel for minutes (1 boot in ~230), a
// fault of the emulated machine that the test cannot act on. Any other
// failure, a package that failed without a failed test (a build error, a
// timeout), or a second lockup, fails the run.
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
	"os/exec"
	"regexp"
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

	rerunOn    *regexp.Regexp // -rerun-on
	marked     map[key]bool   // top-level tests whose output matched rerunOn
	failedPkgs []string       // packages that failed, in order
	failedIn   map[string]int // failed tests per package
	unexpected int            // skips the allow list does not name (finish)
}

type skip struct {
	key
	why string
}

func newReport(out io.Writer) *report {
	return &report{out: out, outputs: map[key][]string{}, marked: map[key]bool{}, failedIn: map[string]int{}}
}

// topLevel is the top-level test of a test or subtest name.
func topLevel(k key) key {
	name, _, _ := strings.Cut(k.test, "/")
	return key{k.pkg, name}
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
		if r.rerunOn != nil && e.Test != "" && r.rerunOn.MatchString(e.Output) {
			r.marked[topLevel(k)] = true
		}
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
			r.failedPkgs = append(r.failedPkgs, e.Package)
			return
		}
		r.failed = append(r.failed, k)
		r.failedIn[e.Package]++
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
	for _, s := range r.skipped {
		mark := "SKIP (allowed)"
		if !allowed(allow, s.key) {
			mark = "SKIP (NOT ALLOWED: the test did not run)"
			r.unexpected++
		}
		fmt.Fprintf(r.out, "%s %s %s: %s\n", mark, s.pkg, s.test, s.why)
	}
	switch {
	case r.packages == 0:
		fmt.Fprintln(r.out, "testreport: no package result in the input")
		status = 1
	case len(r.failedPkgs) > 0 || len(r.failed) > 0:
		fmt.Fprintf(r.out, "testreport: %d of %d packages failed (%d tests)\n", len(r.failedPkgs), r.packages, len(r.failed))
		status = 1
	case r.unexpected > 0:
		fmt.Fprintf(r.out, "testreport: %d tests skipped that must run under make test (fix their prerequisite, or name them in the allow list with the reason)\n", r.unexpected)
		status = 1
	default:
		fmt.Fprintf(r.out, "testreport: %d packages passed, %d allowed skips\n", r.packages, len(r.skipped))
	}
	return status
}

// rerunnable returns the top-level tests to run once more, in order, when
// every failure of the run is a test whose output matched rerunOn: nil
// when anything else failed or nothing did, or when a test skipped that
// must run (finish counted it: the rerun would not run it). Call it after
// finish.
func (r *report) rerunnable() []key {
	if r.rerunOn == nil || len(r.failed) == 0 || r.unexpected > 0 {
		return nil
	}
	for _, p := range r.failedPkgs {
		if r.failedIn[p] == 0 {
			return nil // a build error, a timeout: no test to blame
		}
	}
	var tops []key
	seen := map[key]bool{}
	for _, k := range r.failed {
		t := topLevel(k)
		if !r.marked[t] {
			return nil
		}
		if !seen[t] {
			seen[t] = true
			tops = append(tops, t)
		}
	}
	return tops
}

// rerunArgs is the go test command line that runs tests once more.
func rerunArgs(tests []key, flags []string) []string {
	var names, pkgs []string
	seenName, seenPkg := map[string]bool{}, map[string]bool{}
	for _, k := range tests {
		if !seenName[k.test] {
			seenName[k.test] = true
			names = append(names, regexp.QuoteMeta(k.test))
		}
		if !seenPkg[k.pkg] {
			seenPkg[k.pkg] = true
			pkgs = append(pkgs, k.pkg)
		}
	}
	args := append([]string{"test", "-json"}, flags...)
	args = append(args, "-run", "^(?:"+strings.Join(names, "|")+")$")
	return append(args, pkgs...)
}

// readEvents feeds go test -json lines from in to r.
func readEvents(r *report, in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// Not an event (go test writes build errors to stderr, but be
			// safe): pass it through.
			fmt.Fprintln(r.out, sc.Text())
			continue
		}
		r.add(e)
	}
	return sc.Err()
}

// rerun runs tests once more with gobin and reports that run alone.
func rerun(out io.Writer, gobin, dir string, flags []string, tests []key, verbose bool, allow map[key]bool) int {
	args := rerunArgs(tests, flags)
	fmt.Fprintf(out, "testreport: every failure above is a test whose output matches -rerun-on (%d tests); running them once more: %s %s\n",
		len(tests), gobin, strings.Join(args, " "))
	cmd := exec.Command(gobin, args...)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(out, "testreport: rerun:", err)
		return 1
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(out, "testreport: rerun:", err)
		return 1
	}
	r := newReport(out)
	r.verbose = verbose
	readErr := readEvents(r, pipe)
	waitErr := cmd.Wait()
	st := r.finish(allow)
	if readErr != nil {
		fmt.Fprintln(out, "testreport: rerun: read:", readErr)
		st = 1
	}
	if waitErr != nil && st == 0 {
		fmt.Fprintln(out, "testreport: rerun: go test:", waitErr)
		st = 1
	}
	if st == 0 {
		fmt.Fprintf(out, "testreport: the rerun passed; the first run's failures were: %s\n", keyList(tests))
	}
	return st
}

// goTestFailed reads go test's exit status from path and says what is
// wrong when it is not 0: read when every test passed, a non-zero status
// means go test failed otherwise (a vet error, a crash of the go command).
func goTestFailed(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "go test's exit status: " + err.Error()
	}
	if code := strings.TrimSpace(string(b)); code != "0" {
		return fmt.Sprintf("go test exited with status %q though no test failed", code)
	}
	return ""
}

func keyList(ks []key) string {
	var s []string
	for _, k := range ks {
		s = append(s, k.pkg+" "+k.test)
	}
	return strings.Join(s, ", ")
}

func main() {
	allowPath := flag.String("allow", "", "file of allowed skips (\"PACKAGE TEST\" lines)")
	verbose := flag.Bool("v", false, "print all test output as it comes, and count the tests")
	rerunOn := flag.String("rerun-on", "", "run failed tests once more when each one's output matches this regular expression")
	rerunFlags := flag.String("rerun-flags", "-count=1", "go test flags for the rerun (space-separated)")
	gobin := flag.String("go", "go", "the go command, for the rerun")
	exitFile := flag.String("exit-file", "", "file holding go test's exit status, written before its output ends")
	flag.Parse()
	allow, err := readAllow(*allowPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(2)
	}
	r := newReport(os.Stdout)
	r.verbose = *verbose
	if *rerunOn != "" {
		re, err := regexp.Compile(*rerunOn)
		if err != nil {
			fmt.Fprintln(os.Stderr, "testreport: -rerun-on:", err)
			os.Exit(2)
		}
		r.rerunOn = re
	}
	if err := readEvents(r, os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "testreport: read:", err)
		os.Exit(2)
	}
	st := r.finish(allow)
	if *exitFile != "" && st == 0 {
		if msg := goTestFailed(*exitFile); msg != "" {
			fmt.Println("testreport:", msg)
			st = 1
		}
	}
	if tests := r.rerunnable(); st != 0 && tests != nil {
		st = rerun(os.Stdout, *gobin, "", strings.Fields(*rerunFlags), tests, *verbose, allow)
	}
	os.Exit(st)
}
