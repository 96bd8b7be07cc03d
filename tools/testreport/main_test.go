package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
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
