//go:build linux

package sandbox

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The confined child gets its layout from filesLayoutEnv (JSON) and
// reports each probe's outcome ("" for success, else the error text) on
// its standard output.
const filesLayoutEnv = "OTGATE_SANDBOX_FILES"

type filesLayout struct {
	Confine bool
	Files   Files
	Probes  []fileProbe
}

// fileProbe is one file operation: op on path (and to, for rename).
type fileProbe struct {
	Op, Path, To string
}

func (p fileProbe) String() string { return p.Op + " " + p.Path + p.To }

func (p fileProbe) do() error {
	switch p.Op {
	case "read":
		_, err := os.ReadFile(p.Path)
		return err
	case "list":
		_, err := os.ReadDir(p.Path)
		return err
	case "write": // an existing file, opened for writing
		f, err := os.OpenFile(p.Path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		return f.Close()
	case "create":
		return os.WriteFile(p.Path, []byte("x"), 0o600)
	case "remove":
		return os.Remove(p.Path)
	case "mkdir":
		return os.Mkdir(p.Path, 0o700)
	case "rename":
		return os.Rename(p.Path, p.To)
	case "exec":
		return exec.Command(p.Path).Run()
	}
	return fmt.Errorf("unknown probe %q", p.Op)
}

func runFileProbes(ps []fileProbe) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		if err := p.do(); err != nil {
			out[i] = err.Error()
		}
	}
	return out
}

// filesChild confines itself with the layout's Files and runs the probes
// on the confining thread and on a thread that existed before.
func filesChild() {
	var l filesLayout
	if err := json.Unmarshal([]byte(os.Getenv(filesLayoutEnv)), &l); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	start, done := make(chan struct{}), make(chan []string)
	go func() {
		runtime.LockOSThread()
		<-start
		done <- runFileProbes(l.Probes)
	}()
	rep := struct {
		Err          string
		Main, Before []string
	}{}
	if l.Confine {
		if err := RestrictFiles(l.Files); err != nil {
			rep.Err = err.Error()
		}
	}
	rep.Main = runFileProbes(l.Probes)
	close(start)
	rep.Before = <-done
	json.NewEncoder(os.Stdout).Encode(rep)
	os.Exit(0)
}

func TestRestrictFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the probes show that not even root gets past the ruleset")
	}
	dir := t.TempDir()
	mk := func(rel string, mode os.FileMode) string {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if mode.IsDir() {
			if err := os.Mkdir(p, mode.Perm()); err != nil {
				t.Fatal(err)
			}
			return p
		}
		if err := os.WriteFile(p, []byte("data"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ro := mk("ro", os.ModeDir|0o755)
	roFile := mk("ro/conf", 0o644)
	roTool := mk("ro/tool", 0o755)
	if err := os.WriteFile(roTool, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	state := mk("state", os.ModeDir|0o700)
	stateFile := mk("state/cur", 0o600)
	dev := mk("dev/rtc", 0o600)            // a single writable file
	devOther := mk("dev/tpm", 0o600)       // its neighbour, not granted
	secret := mk("secret/key", 0o644)      // world-readable, not granted
	other := mk("other", os.ModeDir|0o777) // another service's state
	zone := mk("etc/zone", 0o644)          // a single readable file
	zoneNext := mk("etc/zone.next", 0o644) // its neighbour, not granted

	probes := []fileProbe{
		{"read", roFile, ""},
		{"list", ro, ""},
		{"write", roFile, ""},
		{"create", filepath.Join(ro, "new"), ""},
		{"remove", roFile, ""},
		{"exec", roTool, ""},
		{"read", stateFile, ""},
		{"write", stateFile, ""},
		{"create", filepath.Join(state, "tmp"), ""},
		{"rename", filepath.Join(state, "tmp"), filepath.Join(state, "next")},
		{"remove", filepath.Join(state, "next"), ""},
		{"mkdir", filepath.Join(state, "sub"), ""},
		{"read", dev, ""},
		{"write", dev, ""},
		{"read", devOther, ""},
		{"write", devOther, ""},
		{"read", secret, ""},
		{"list", filepath.Dir(secret), ""},
		{"create", filepath.Join(other, "x"), ""},
		{"rename", stateFile, filepath.Join(other, "stolen")},
		{"read", "/etc/passwd", ""},
		{"read", zone, ""},
		{"write", zone, ""},
		{"read", zoneNext, ""},
	}
	allowed := map[int]bool{0: true, 1: true, 6: true, 7: true, 8: true, 9: true, 10: true, 11: true, 12: true, 13: true, 21: true}

	run := func(confine bool, f Files, ps []fileProbe) (string, []string, []string) {
		t.Helper()
		b, err := json.Marshal(filesLayout{Confine: confine, Files: f, Probes: ps})
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run", "^$")
		cmd.Env = append(os.Environ(), childEnv+"=files", filesLayoutEnv+"="+string(b))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("child: %v", err)
		}
		var rep struct {
			Err          string
			Main, Before []string
		}
		if err := json.Unmarshal(out, &rep); err != nil {
			t.Fatalf("child: %v in %q", err, out)
		}
		return rep.Err, rep.Main, rep.Before
	}

	// Unconfined, root does every probe: each refusal below is the
	// ruleset's.
	reset := func() {
		for _, p := range []string{filepath.Join(ro, "new"), filepath.Join(state, "sub"), filepath.Join(other, "x"), filepath.Join(other, "stolen")} {
			os.RemoveAll(p)
		}
		if err := os.WriteFile(roFile, []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(stateFile, []byte("data"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The probes that mutate are ordered so that each child runs them on
	// the same starting state; the "before" thread repeats them after the
	// main one, so only the main thread's results are read for those.
	reset()
	_, open, _ := run(false, Files{}, probes)
	for i, p := range probes {
		if open[i] != "" {
			t.Fatalf("unconfined: %s: %s (the probe shows nothing here)", p, open[i])
		}
	}

	// The probes that mutate run on the main thread first; the older
	// thread repeats them after it, so for those only refusals are read.
	reset()
	f := Files{Read: []string{ro, "/proc"}, ReadIfExists: []string{filepath.Join(dir, "absent"), zone}, Write: []string{state, dev}}
	errText, main, before := run(true, f, probes)
	if errText != "" {
		t.Fatalf("RestrictFiles: %s", errText)
	}
	for i, p := range probes {
		got := main[i]
		switch {
		case allowed[i] && got != "":
			t.Errorf("confined: %s: %s, want it allowed", p, got)
		case !allowed[i] && !strings.Contains(got, "permission denied"):
			t.Errorf("confined: %s: %q, want permission denied", p, got)
		}
	}
	// The thread made before the restriction is confined too: what the
	// ruleset refuses fails there as well.
	for i, p := range probes {
		if !allowed[i] && !strings.Contains(before[i], "permission denied") {
			t.Errorf("older thread: %s: %q, want permission denied", p, before[i])
		}
	}

	// Bad input confines nothing: the child can still read the secret.
	for _, bad := range []struct {
		name string
		f    Files
		want string
	}{
		{"missing read path", Files{Read: []string{ro, filepath.Join(dir, "absent")}}, "absent: no such file"},
		{"missing write path", Files{Write: []string{filepath.Join(dir, "absent")}}, "absent: no such file"},
		{"relative path", Files{Read: []string{"etc"}}, `path "etc" is not absolute`},
	} {
		errText, main, _ := run(true, bad.f, []fileProbe{{"read", secret, ""}})
		if !strings.Contains(errText, bad.want) {
			t.Errorf("%s: error %q, want it to name %q", bad.name, errText, bad.want)
		}
		if main[0] != "" {
			t.Errorf("%s: after the refused restriction the secret is unreadable (%s): it confined something", bad.name, main[0])
		}
	}
}

// procSysChild confines itself to reading /proc/sys/net/ipv4, reads
// ip_forward, and reads it again each time a line arrives on its input.
func procSysChild() {
	if err := RestrictFiles(Files{Read: []string{"/proc/sys/net/ipv4"}}); err != nil {
		fmt.Println("restrict:", err)
		os.Exit(0)
	}
	in := bufio.NewScanner(os.Stdin)
	for {
		if _, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err != nil {
			fmt.Println(err)
		} else {
			fmt.Println("ok")
		}
		if !in.Scan() {
			os.Exit(0)
		}
	}
}

// A rule on a /proc/sys path keeps matching after the kernel dropped its
// dentries: procfs makes a new inode for an entry looked up again, and
// RestrictFiles holds the rule's path open so that it never has to.
func TestRestrictFilesSurvivesDroppedDentries(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: writes /proc/sys/vm/drop_caches")
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), childEnv+"=procsys")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	out := bufio.NewScanner(stdout)
	read := func(when string) {
		t.Helper()
		if !out.Scan() {
			t.Fatalf("%s: child gone: %v", when, out.Err())
		}
		if got := out.Text(); got != "ok" {
			t.Fatalf("%s: read ip_forward confined: %s", when, got)
		}
	}
	read("first read")
	for i := range 3 {
		// 2: free reclaimable dentries and inodes (not the page cache).
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(stdin)
		read(fmt.Sprintf("read after drop_caches %d", i+1))
	}
}
