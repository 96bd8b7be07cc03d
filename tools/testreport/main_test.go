package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// goTestJSON runs `go test -json` on a throwaway module holding src as its
// test file and returns the events.
func goTestJSON(t *testing.T, src string) []event {
	t.Helper()
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.test/m\n\ngo 1.22\n")
	write("m_test.go", src)
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command (this test runs go test): %v", err)
	}
	cmd := exec.Command(gobin, "test", "-json", "-count=1", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	out, _ := cmd.Output() // a failing test exits non-zero: the events say so
	var evs []event
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("go test -json line %q: %v", sc.Text(), err)
		}
		evs = append(evs, e)
	}
	if len(evs) == 0 {
		t.Fatalf("go test -json printed no events: %s", out)
	}
	return evs
}

func run(evs []event, allow map[key]bool) (string, int) {
	var b bytes.Buffer
	r := newReport(&b)
	for _, e := range evs {
		r.add(e)
	}
	st := r.finish(allow)
	return b.String(), st
}

const tests = `package m

import "testing"

func TestPasses(t *testing.T) {}

func TestNeedsRoot(t *testing.T) { t.Skip("needs root (network namespaces)") }

func TestSub(t *testing.T) {
	t.Run("a", func(t *testing.T) { t.Skip("no swtpm") })
}
`

func TestSkipsFailUnlessAllowed(t *testing.T) {
	evs := goTestJSON(t, tests)
	out, st := run(evs, nil)
	if st == 0 {
		t.Fatalf("two unexpected skips, exit 0:\n%s", out)
	}
	for _, want := range []string{
		"SKIP (NOT ALLOWED: the test did not run) example.test/m TestNeedsRoot: m_test.go:7: needs root (network namespaces)",
		"SKIP (NOT ALLOWED: the test did not run) example.test/m TestSub/a: m_test.go:10: no swtpm",
		"testreport: 2 tests skipped that must run",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}

	allow := map[key]bool{{"example.test/m", "TestNeedsRoot"}: true, {"example.test/m", "TestSub/*"}: true}
	out, st = run(evs, allow)
	if st != 0 || !strings.Contains(out, "testreport: 1 packages passed, 2 allowed skips") {
		t.Fatalf("every skip allowed: exit %d:\n%s", st, out)
	}
}

func TestFailurePrintsTheTestsOutput(t *testing.T) {
	evs := goTestJSON(t, `package m

import "testing"

func TestOK(t *testing.T) { t.Log("quiet when it passes") }

func TestBroken(t *testing.T) { t.Error("the gate answered 0x83") }
`)
	out, st := run(evs, nil)
	if st == 0 {
		t.Fatalf("a failed test, exit 0:\n%s", out)
	}
	if !strings.Contains(out, "the gate answered 0x83") || strings.Contains(out, "quiet when it passes") {
		t.Errorf("want the failed test's output and not the passing one's:\n%s", out)
	}
	if !strings.Contains(out, "FAIL\texample.test/m") {
		t.Errorf("want the package's FAIL line:\n%s", out)
	}
}

func TestBuildFailureIsAFailure(t *testing.T) {
	evs := goTestJSON(t, "package m\n\nfunc TestX(t *testing.T) { undefined() }\n")
	if out, st := run(evs, nil); st == 0 {
		t.Fatalf("a package that does not build, exit 0:\n%s", out)
	}
}

func TestNoInputIsAFailure(t *testing.T) {
	if out, st := run(nil, nil); st == 0 || !strings.Contains(out, "no package result") {
		t.Fatalf("empty input: exit %d:\n%s", st, out)
	}
}

func TestReadAllow(t *testing.T) {
	p := filepath.Join(t.TempDir(), "allow")
	os.WriteFile(p, []byte("# why\nexample.test/m TestA # reason\n\n"), 0o644)
	a, err := readAllow(p)
	if err != nil || !a[key{"example.test/m", "TestA"}] || len(a) != 1 {
		t.Fatalf("readAllow = %v, %v", a, err)
	}
	os.WriteFile(p, []byte("example.test/m\n"), 0o644)
	if _, err := readAllow(p); err == nil || !strings.Contains(err.Error(), ":1:") {
		t.Fatalf("a line without a test name: err = %v, want one naming line 1", err)
	}
}

// -v passes every line through as it comes (the QEMU tests' progress),
// prints a failed test's output once, still fails on a skip, and counts
// the tests.
func TestVerbose(t *testing.T) {
	evs := goTestJSON(t, `package m

import "testing"

func TestOK(t *testing.T) { t.Log("progress: VM booted") }

func TestBroken(t *testing.T) { t.Error("the gate answered 0x83") }

func TestNeedsQEMU(t *testing.T) { t.Skip("no qemu-system-x86_64") }
`)
	var b bytes.Buffer
	r := newReport(&b)
	r.verbose = true
	for _, e := range evs {
		r.add(e)
	}
	st := r.finish(nil)
	out := b.String()
	if st == 0 {
		t.Fatalf("a failure and a skip, exit 0:\n%s", out)
	}
	for _, want := range []string{
		"=== RUN   TestOK", "progress: VM booted", "--- PASS: TestOK",
		"SKIP (NOT ALLOWED: the test did not run) example.test/m TestNeedsQEMU: m_test.go:9: no qemu-system-x86_64",
		"testreport: tests: 1 passed, 1 failed, 1 skipped",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("verbose report lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "the gate answered 0x83"); n != 1 {
		t.Errorf("the failed test's output printed %d times, want once:\n%s", n, out)
	}
}

// lockupTests fail TestLockup with the guest kernel's soft lockup report in
// a subtest's output until the file named by TESTREPORT_FLAG exists, and
// TestPlain when TESTREPORT_PLAIN is set.
const lockupTests = `package m

import (
	"os"
	"testing"
)

func TestOK(t *testing.T) {}

func TestLockup(t *testing.T) {
	t.Run("boot", func(t *testing.T) {
		if _, err := os.Stat(os.Getenv("TESTREPORT_FLAG")); err == nil {
			return
		}
		t.Log("console: [ 52.667396] watchdog: BUG: soft lockup - CPU#0 stuck for 45s! [kworker/0:1:17]")
		t.Error("waiting for init: ready: context deadline exceeded")
	})
}

func TestPlain(t *testing.T) {
	if os.Getenv("TESTREPORT_PLAIN") != "" {
		t.Error("the gate answered 0x83")
	}
}
`

const lockupRE = `BUG: soft lockup - CPU#\d+ stuck`

// lockupModule writes lockupTests as a module and returns its directory.
func lockupModule(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, s := range map[string]string{"go.mod": "module example.test/m\n\ngo 1.22\n", "m_test.go": lockupTests} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func goTestIn(t *testing.T, dir string) []event {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command (this test runs go test): %v", err)
	}
	cmd := exec.Command(gobin, "test", "-json", "-count=1", ".")
	cmd.Dir = dir
	out, _ := cmd.Output()
	var evs []event
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var e event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("go test -json line %q: %v", l, err)
		}
		evs = append(evs, e)
	}
	return evs
}

func reportOf(evs []event, rerunOn string) (*report, string, int) {
	var b bytes.Buffer
	r := newReport(&b)
	r.verbose = true
	r.rerunOn = regexp.MustCompile(rerunOn)
	for _, e := range evs {
		r.add(e)
	}
	st := r.finish(nil)
	return r, b.String(), st
}

// A run whose only failure is a test that printed the lockup report (in a
// subtest) runs that top-level test once more; its second run passes, and
// so does the report. A second lockup fails it.
func TestRerunAfterLockup(t *testing.T) {
	dir := lockupModule(t)
	flag := filepath.Join(t.TempDir(), "second-run")
	t.Setenv("TESTREPORT_FLAG", flag)
	t.Setenv("GOFLAGS", "")
	t.Setenv("GOWORK", "off")
	r, out, st := reportOf(goTestIn(t, dir), lockupRE)
	if st == 0 {
		t.Fatalf("the first run failed, status 0:\n%s", out)
	}
	tests := r.rerunnable()
	if want := []key{{"example.test/m", "TestLockup"}}; !reflect.DeepEqual(tests, want) {
		t.Fatalf("rerunnable = %v, want %v", tests, want)
	}
	if got, want := strings.Join(rerunArgs(tests, []string{"-count=1", "-p", "1"}), " "),
		"test -json -count=1 -p 1 -run ^(?:TestLockup)$ example.test/m"; got != want {
		t.Errorf("rerun args %q, want %q", got, want)
	}
	gobin, _ := exec.LookPath("go")

	// The lockup again: the rerun fails.
	var b bytes.Buffer
	if st := rerun(&b, gobin, dir, []string{"-count=1"}, tests, true, nil); st == 0 {
		t.Fatalf("a second lockup passed:\n%s", b.String())
	}
	if !strings.Contains(b.String(), "running them once more: ") || strings.Contains(b.String(), "the rerun passed") {
		t.Errorf("rerun output:\n%s", b.String())
	}

	// Cured: the rerun passes and says what failed first.
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	if st := rerun(&b, gobin, dir, []string{"-count=1"}, tests, true, nil); st != 0 {
		t.Fatalf("the rerun failed:\n%s", b.String())
	}
	for _, want := range []string{"--- PASS: TestLockup", "testreport: tests: 2 passed, 0 failed", "the rerun passed; the first run's failures were: example.test/m TestLockup"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("rerun output lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "TestOK") || strings.Contains(b.String(), "TestPlain") {
		t.Errorf("the rerun ran more than TestLockup:\n%s", b.String())
	}
}

// Nothing runs again when any failure lacks the report, when nothing
// failed, or without -rerun-on.
func TestNoRerun(t *testing.T) {
	dir := lockupModule(t)
	t.Setenv("TESTREPORT_FLAG", filepath.Join(t.TempDir(), "absent"))
	t.Setenv("TESTREPORT_PLAIN", "1")
	t.Setenv("GOFLAGS", "")
	t.Setenv("GOWORK", "off")
	evs := goTestIn(t, dir)
	if r, out, _ := reportOf(evs, lockupRE); r.rerunnable() != nil {
		t.Errorf("TestPlain failed without the report, rerunnable = %v:\n%s", r.rerunnable(), out)
	}
	r := newReport(io.Discard)
	for _, e := range evs {
		r.add(e)
	}
	if r.rerunnable() != nil {
		t.Errorf("without -rerun-on: rerunnable = %v", r.rerunnable())
	}

	// The lockup alone, but a test skipped that the allow list does not
	// name: the rerun would not run it, so the run fails as it is.
	var b bytes.Buffer
	r = newReport(&b)
	r.rerunOn = regexp.MustCompile(lockupRE)
	for _, e := range evs {
		if e.Test != "TestPlain" {
			r.add(e)
		}
	}
	r.add(event{Action: "skip", Package: "example.test/m", Test: "TestNeedsRoot"})
	if st := r.finish(nil); st == 0 || r.rerunnable() != nil {
		t.Errorf("a lockup and an unallowed skip: status %d, rerunnable %v:\n%s", st, r.rerunnable(), b.String())
	}

	t.Setenv("TESTREPORT_PLAIN", "")
	if err := os.WriteFile(os.Getenv("TESTREPORT_FLAG"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if r, out, st := reportOf(goTestIn(t, dir), lockupRE); st != 0 || r.rerunnable() != nil {
		t.Errorf("a passing run: status %d, rerunnable %v:\n%s", st, r.rerunnable(), out)
	}

	// A package that failed with no failed test (a build error).
	if err := os.WriteFile(filepath.Join(dir, "m_test.go"), []byte("package m\n\nfunc broken( {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, _, st := reportOf(goTestIn(t, dir), lockupRE)
	r.marked[key{"example.test/m", "TestLockup"}] = true
	r.failed = append(r.failed, key{"example.test/m", "TestLockup"}) // as if a test had failed too
	if st == 0 || r.rerunnable() != nil {
		t.Errorf("a build error: status %d, rerunnable %v", st, r.rerunnable())
	}
}

func TestGoTestFailed(t *testing.T) {
	dir := t.TempDir()
	for content, bad := range map[string]bool{"0\n": false, "1\n": true, "": true, "2": true} {
		p := filepath.Join(dir, "rc")
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if msg := goTestFailed(p); (msg != "") != bad {
			t.Errorf("status file %q: %q", content, msg)
		}
	}
	if goTestFailed(filepath.Join(dir, "absent")) == "" {
		t.Error("no status file: no complaint")
	}
}
