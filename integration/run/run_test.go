// Package run holds the test of `make run`, the first thing a user runs:
// the real otgate-run binary boots the demo image under QEMU with the
// plant simulator and prints a banner with the commands to log in,
// connect and use mbpoll through the gate. The test runs those commands
// as the banner prints them.
package run

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/image"
	"github.com/otgate/otgate/integration/internal/gatetest"
	"github.com/otgate/otgate/internal/ptytest"
	"github.com/otgate/otgate/qemu/lab"
)

const rule = "================================================================================"

// TestMakeRunDemo runs otgate-run -demo as `make run` does (its own
// build of the client and the plant simulator, a factory-fresh gate),
// with a test-built demo image, a temporary state directory and a free
// port, in a private network namespace of its own: its 127.0.0.1 is the
// test's "this host", so the banner's fixed local port (5020) and the
// forwarded one meet nothing else on the machine. It waits for the
// banner and executes the commands in it literally with sh -c from
// another directory (a new terminal), as the user would: login at a
// terminal with the password typed at the prompt and the code from the
// banner's oathtool command, connect, the mbpoll read (the plant's
// values), the allowed write and its read-back (1234), the denied write
// (Illegal data address, the valve unchanged), assets and logout. Then
// Ctrl-C (SIGINT to otgate-run's process group, as a terminal sends it):
// the gate powers down cleanly, otgate-run exits 0, and nothing it
// started is left: no process (the test is a child subreaper, so any
// orphan would come to it), none of its network namespaces (held by a
// process or bind-mounted), no lab interface in the host's namespace,
// nothing in its temporary directory.
func TestMakeRunDemo(t *testing.T) {
	for _, bin := range []string{"mbpoll", "oathtool", "nsenter", "unshare", "ip", "go", "sh"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (make test installs it)", bin)
		}
	}
	b, img := gatetest.Variant(t, "qemu-x86_64", "run-demo", image.WithDemo(true))
	root := gatetest.RepoRoot(t)
	work := t.TempDir()
	runBin := filepath.Join(work, "otgate-run")
	if out, err := gocmd(root, "build", "-o", runBin, "./qemu/cmd/otgate-run").CombinedOutput(); err != nil {
		t.Fatalf("go build otgate-run: %v\n%s", err, out)
	}
	tmp, state, home := filepath.Join(work, "tmp"), filepath.Join(work, "state"), filepath.Join(work, "home")
	// The client and the plant simulator go beside the image, named
	// relative to the source tree as make run's out/bin is: the banner
	// must name them so that they run from another directory.
	bins, err := filepath.Rel(root, filepath.Join(filepath.Dir(img), "bin"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{tmp, home} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// Orphans of otgate-run's children come to this process, not to PID 1.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("PR_SET_CHILD_SUBREAPER: %v", err)
	}

	start := time.Now()
	run := exec.Command("unshare", "--net", "--", "sh", "-c", `ip link set lo up && exec "$0" "$@"`,
		runBin, "-demo", "-board", b.Name, "-image", img, "-state", state, "-port", "0", "-bin", bins)
	run.Dir = root // otgate-run builds the demo tools from the source tree, as make run does
	run.Env = append(os.Environ(), "TMPDIR="+tmp)
	run.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its own group, like a terminal's foreground job
	var console, stderr text
	run.Stdout, run.Stderr = &console, &stderr
	run.WaitDelay = 10 * time.Second
	if err := run.Start(); err != nil {
		t.Fatalf("start otgate-run: %v", err)
	}
	pid := run.Process.Pid
	done := make(chan struct{})
	var runErr error
	go func() { runErr = run.Wait(); close(done) }()
	var started []proc // what otgate-run started, recorded while it runs
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			t.Logf("stopping otgate-run (pid %d)", pid)
			_ = syscall.Kill(-pid, syscall.SIGINT)
			select {
			case <-done:
			case <-time.After(100 * time.Second):
				_ = syscall.Kill(-pid, syscall.SIGKILL)
				<-done
			}
		}
		for _, p := range started {
			if p.alive() {
				_ = syscall.Kill(p.pid, syscall.SIGKILL)
			}
		}
		for _, p := range descendants(os.Getpid()) { // orphans that came to us, and theirs
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
		for _, p := range children(os.Getpid()) {
			var ws unix.WaitStatus
			_, _ = unix.Wait4(p.pid, &ws, 0, nil)
		}
		if t.Failed() {
			t.Logf("otgate-run's output:\n%s\nconsole tail:\n%s", stderr.String(), tail(console.String(), 60))
		}
	})
	exited := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}

	// The banner.
	var banner string
	waitUntil(t, "the demo banner", 5*time.Minute, exited, func() bool {
		s := stderr.String()
		i := strings.Index(s, rule+"\n")
		if i < 0 {
			return false
		}
		j := strings.Index(s[i+len(rule)+1:], rule+"\n")
		if j < 0 {
			return false
		}
		banner = s[i : i+len(rule)+1+j+len(rule)]
		return true
	})
	t.Logf("banner after %s:\n%s", time.Since(start).Round(time.Second), banner)
	cmds := parseBanner(t, banner)

	// What otgate-run started, to check it is all gone at the end: its
	// children, the lab's namespaces (held by its descriptors), and its
	// own private namespace.
	started = children(pid)
	for _, want := range []string{"qemu-system-x86", "swtpm", "otgate-plant"} {
		found := false
		for _, p := range started {
			found = found || strings.HasPrefix(p.comm, want)
		}
		if !found {
			t.Fatalf("no %s among otgate-run's children %v", want, started)
		}
	}
	namespaces := netNamespaces(pid)
	if len(namespaces) != 3 {
		t.Fatalf("otgate-run holds %d network namespaces %v, want its own, the lab's and the plant's", len(namespaces), namespaces)
	}
	t.Logf("otgate-run (pid %d) started %v; network namespaces %v", pid, started, namespaces)

	// The user's commands: a shell in another directory (a new terminal
	// starts in the home directory), on this host (otgate-run's network
	// namespace).
	env := append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
	user := func(ctx context.Context, line string) *exec.Cmd {
		c := exec.CommandContext(ctx, "nsenter", fmt.Sprintf("--net=/proc/%d/ns/net", pid), "--", "sh", "-c", line)
		c.Dir, c.Env = home, env
		return c
	}
	shell := func(line string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := user(ctx, line).CombinedOutput()
		t.Logf("$ %s\n%s(exit: %v)", line, out, err)
		return string(out), err
	}

	// 1. Login at a terminal: the password typed at its prompt, the code
	// from the banner's oathtool command typed at the next.
	login(t, user, cmds, shell)

	// 2. The tunnel, left running.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var connOut text
	conn := user(ctx, cmds.connect)
	conn.Stdout, conn.Stderr = &connOut, &connOut
	conn.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	conn.Cancel = func() error { return syscall.Kill(-conn.Process.Pid, syscall.SIGKILL) }
	conn.WaitDelay = 5 * time.Second
	if err := conn.Start(); err != nil {
		t.Fatal(err)
	}
	connDone := make(chan struct{})
	go func() { conn.Wait(); close(connDone) }()
	t.Cleanup(func() { cancel(); <-connDone })
	connExited := func() bool {
		select {
		case <-connDone:
			return true
		default:
			return false
		}
	}
	listening := regexp.MustCompile(`(?m)^listening on 127\.0\.0\.1:\d+ for plc-tank/modbus through 127\.0\.0\.1:\d+$`)
	waitUntil(t, "otgate connect to listen", time.Minute, connExited, func() bool { return listening.MatchString(connOut.String()) })
	t.Logf("$ %s\n%s", cmds.connect, connOut.String())

	// 3. mbpoll through the gate: the plant's start values (valve 20 %,
	// setpoints 80 % and 20 %, high alarm 95 %).
	plantValues := func(what, out string) {
		t.Helper()
		for i, v := range []int{20, 800, 200, 950} {
			if !regexp.MustCompile(fmt.Sprintf(`(?m)^\[%d\]:\s+%d$`, i+1, v)).MatchString(out) {
				t.Errorf("%s: holding register %d is not %d:\n%s", what, i, v, out)
			}
		}
	}
	out, err := shell(cmds.read)
	if err != nil {
		t.Fatalf("the banner's read failed: %v\n%s", err, out)
	}
	plantValues("the banner's read", out)
	if out, err := shell(cmds.write); err != nil || !strings.Contains(out, "Written 1 references.") {
		t.Fatalf("the banner's allowed write: %v\n%s", err, out)
	}
	ref := regexp.MustCompile(` -r (\d+) `).FindStringSubmatch(cmds.write)
	if ref == nil {
		t.Fatalf("the banner's write names no register (-r): %q", cmds.write)
	}
	if out, err := shell(cmds.readBack); err != nil || !regexp.MustCompile(`(?m)^\[`+ref[1]+`\]:\s+1234$`).MatchString(out) {
		t.Fatalf("the banner's read-back does not show 1234 in reference %s: %v\n%s", ref[1], err, out)
	}
	out, err = shell(cmds.denied)
	if err == nil || !strings.Contains(out, cmds.deniedSays) || !strings.Contains(cmds.deniedSays, "Illegal data address") {
		t.Fatalf("the banner's denied write: exit %v, want a failure saying %q (the banner's words) with Illegal data address:\n%s", err, cmds.deniedSays, out)
	}
	// The PLC never saw it: the valve is still at 20 %.
	if out, err = shell(cmds.read); err != nil {
		t.Fatalf("read after the denied write: %v\n%s", err, out)
	}
	plantValues("the read after the denied write", out)
	if s := connOut.String(); strings.Count(s, "allowed by rule engineer-demo") < 5 {
		t.Errorf("otgate connect reported fewer than five sessions allowed by engineer-demo:\n%s", s)
	}

	// 4. assets (with plc-tank's Modbus/TCP Security endpoint) and
	// logout; after the logout the credential is gone.
	if out, err := shell(cmds.assets); err != nil || !regexp.MustCompile(`(?m)^alice at 127\.0\.0\.1:\d+, `).MatchString(out) ||
		!regexp.MustCompile(`(?m)^plc-tank\s+modbus\s+.*engineer-demo\s+100\.64\.\d+\.\d+:802$`).MatchString(out) {
		t.Fatalf("the banner's assets: %v\n%s", err, out)
	}
	if out, err := shell(cmds.logout); err != nil || !strings.Contains(out, "logged out of 127.0.0.1:") {
		t.Fatalf("the banner's logout: %v\n%s", err, out)
	}
	if out, err := shell(cmds.assets); err == nil || !strings.Contains(out, "not logged in") {
		t.Errorf("assets after the logout: %v, want not logged in:\n%s", err, out)
	}
	cancel()
	<-connDone
	t.Logf("commands done after %s", time.Since(start).Round(time.Second))

	// Ctrl-C: a clean power-down and exit 0.
	if err := syscall.Kill(-pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		t.Fatalf("otgate-run still running 3 minutes after Ctrl-C")
	}
	if runErr != nil {
		t.Errorf("otgate-run after Ctrl-C: %v, want exit 0", runErr)
	}
	errText, con := stderr.String(), console.String()
	if !cleanPowerOff(errText) {
		t.Errorf("otgate-run does not report a clean power-off:\n%s", tail(errText, 5))
	}
	if !strings.Contains(con, "init: powering off") {
		t.Errorf("the gate's console shows no clean power-off:\n%s", tail(con, 20))
	}
	t.Logf("otgate-run exited after %s:\n%s", time.Since(start).Round(time.Second), tail(errText, 3))

	// Nothing left behind.
	for _, p := range started {
		if p.alive() {
			t.Errorf("%s (pid %d), started by otgate-run, is still running", p.comm, p.pid)
		}
	}
	left := descendants(os.Getpid())
	for _, p := range left {
		if p.state != "Z" {
			t.Errorf("%s (pid %d) outlived otgate-run (came to the test as an orphan)", p.comm, p.pid)
		}
	}
	for _, ino := range namespaces {
		if ref := namespaceHeld(ino, left); ref != "" {
			t.Errorf("network namespace net:[%d] of otgate-run still alive: %s", ino, ref)
		}
	}
	for _, n := range hostLinks(t) {
		switch n {
		case lab.UplinkTap, lab.DownlinkTap, lab.Bridge, lab.PlantVethLab:
			t.Errorf("lab interface %s in the host's network namespace", n)
		}
	}
	if left := dirNames(tmp); len(left) > 0 {
		t.Errorf("otgate-run left %v in its temporary directory", left)
	}
}

// cleanPowerOff tells whether otgate-run's output ends with QEMU's exit 0
// after the guest powered itself off (the last event SHUTDOWN with
// reason guest-shutdown, from the guest) and without a watchdog, followed
// only by the plant simulator's stop (otgate-run stops it once the gate
// is down).
func cleanPowerOff(out string) bool {
	out = strings.TrimSuffix(strings.TrimRight(out, "\n"), "\notgate-run: plant simulator stopped")
	m := regexp.MustCompile(`(?m)^otgate-run: QEMU ended: code 0 events \[(.*)\]$`).FindStringSubmatch(out)
	if m == nil || !strings.HasSuffix(strings.TrimRight(out, "\n"), m[0]) {
		return false
	}
	events := strings.Split(m[1], "; ")
	for _, e := range events {
		if strings.HasPrefix(e, "WATCHDOG") {
			return false
		}
	}
	// The data of an event is printed in map order: compare as a set.
	last := strings.Fields(events[len(events)-1])
	slices.Sort(last)
	return slices.Equal(last, []string{"SHUTDOWN", "guest=true", "reason=guest-shutdown"})
}

// demoCommands are the commands of the banner, each one line for sh.
type demoCommands struct {
	login, password, totp, connect string
	read, write, readBack, denied  string
	deniedSays                     string // the denied write's error, as the banner quotes it
	assets, logout                 string
}

// parseBanner takes the banner's indented lines apart: the commands, the
// password, the TOTP command and the denied write's expected error, in
// the banner's order.
func parseBanner(t *testing.T, banner string) demoCommands {
	t.Helper()
	var c demoCommands
	var lines []string
	for _, m := range regexp.MustCompile(`(?m)^      (\S.*)$`).FindAllStringSubmatch(banner, -1) {
		line := strings.TrimSpace(m[1])
		if v, ok := strings.CutPrefix(line, "password:"); ok {
			c.password = strings.TrimSpace(v)
		} else if v, ok := strings.CutPrefix(line, "TOTP code:"); ok {
			c.totp = strings.TrimSpace(v)
		} else if v, ok := strings.CutPrefix(line, "-> mbpoll: "); ok {
			c.deniedSays = strings.Trim(v, `"`)
		} else {
			lines = append(lines, line)
		}
	}
	shapes := []struct {
		into *string
		re   string
	}{
		{&c.login, `^/\S+/otgate login --user alice --pin [0-9a-f]{64} https://127\.0\.0\.1:\d+$`},
		{&c.connect, `^/\S+/otgate connect plc-tank --listen 127\.0\.0\.1:\d+$`},
		{&c.read, `^mbpoll .* -c 10 .*127\.0\.0\.1$`},
		{&c.write, `^mbpoll .*127\.0\.0\.1 1234$`},
		{&c.readBack, `^mbpoll .* -c 1 .*127\.0\.0\.1$`},
		{&c.denied, `^mbpoll .*127\.0\.0\.1 \d+$`},
		{&c.assets, `^/\S+/otgate assets$`},
		{&c.logout, `^/\S+/otgate logout$`},
	}
	if len(lines) != len(shapes) {
		t.Fatalf("banner has %d commands %q, want %d (login, connect, four mbpoll, assets, logout)", len(lines), lines, len(shapes))
	}
	for i, s := range shapes {
		if !regexp.MustCompile(s.re).MatchString(lines[i]) {
			t.Fatalf("banner command %d %q is not of the shape %s", i+1, lines[i], s.re)
		}
		*s.into = lines[i]
	}
	if c.password == "" || !regexp.MustCompile(`^oathtool --totp -b [A-Z2-7]+$`).MatchString(c.totp) || c.deniedSays == "" {
		t.Fatalf("banner lacks the password (%q), the TOTP command (%q) or the denied write's error (%q)", c.password, c.totp, c.deniedSays)
	}
	return c
}

// login runs the banner's login command on a pseudo-terminal and answers
// its prompts: the banner's password, then the code of the banner's
// oathtool command.
func login(t *testing.T, user func(context.Context, string) *exec.Cmd, c demoCommands, shell func(string) (string, error)) {
	t.Helper()
	master, slave := ptytest.Open(t)
	tty, err := os.OpenFile(slave, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := user(ctx, c.login)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	var screen text
	copied := make(chan struct{})
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := master.Read(b)
			screen.Write(b[:n])
			if err != nil {
				close(copied)
				return
			}
		}
	}()
	waitDone := make(chan error, 1)
	go func() { waitDone <- cmd.Wait() }()
	gone := func() bool { return len(waitDone) > 0 }
	waitUntil(t, "the login's password prompt", time.Minute, gone, func() bool { return strings.HasSuffix(screen.String(), "password: ") })
	if _, err := master.Write([]byte(c.password + "\r")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the login's TOTP prompt", time.Minute, gone, func() bool { return strings.HasSuffix(screen.String(), "TOTP code: ") })
	code, err := shell(c.totp)
	code = strings.TrimSpace(code)
	if err != nil || !regexp.MustCompile(`^\d{6}$`).MatchString(code) {
		t.Fatalf("the banner's TOTP command: %v, %q", err, code)
	}
	if _, err := master.Write([]byte(code + "\r")); err != nil {
		t.Fatal(err)
	}
	err = <-waitDone
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
	}
	out := screen.String()
	t.Logf("$ %s\n%s(exit: %v)", c.login, out, err)
	if strings.Contains(out, c.password) {
		t.Errorf("the password was echoed on the terminal")
	}
	if err != nil || !regexp.MustCompile(`(?m)^logged in as alice until `).MatchString(strings.ReplaceAll(out, "\r", "")) {
		t.Fatalf("the banner's login failed: %v\n%s", err, out)
	}
}

// text is a goroutine-safe buffer for a command's output.
type text struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (x *text) Write(p []byte) (int, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.buf.Write(p)
}

func (x *text) String() string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.buf.String()
}

// waitUntil polls cond until it holds; it fails the test after d or when
// gone reports that the process it waits on ended.
func waitUntil(t *testing.T, what string, d time.Duration, gone, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); ; time.Sleep(100 * time.Millisecond) {
		if cond() {
			return
		}
		if gone() {
			if cond() {
				return
			}
			t.Fatalf("waiting for %s: the process ended", what)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, d)
		}
	}
}

func gocmd(dir string, args ...string) *exec.Cmd {
	c := exec.Command("go", args...)
	c.Dir = dir
	return c
}

// proc is a process as /proc/<pid>/stat shows it.
type proc struct {
	pid, ppid int
	comm      string
	state     string
	start     string // start time in clock ticks since boot: with pid, the process's identity
}

func (p proc) String() string { return fmt.Sprintf("%s(%d)", p.comm, p.pid) }

func readProc(pid int) (proc, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return proc{}, false
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return proc{}, false
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 20 {
		return proc{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	return proc{pid: pid, ppid: ppid, comm: s[open+1 : end], state: f[0], start: f[19]}, true
}

// alive reports whether the same process (pid and start time) still runs.
func (p proc) alive() bool {
	now, ok := readProc(p.pid)
	return ok && now.start == p.start && now.state != "Z"
}

// children lists the processes whose parent is ppid.
func children(ppid int) []proc {
	var out []proc
	for _, name := range dirNames("/proc") {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		if p, ok := readProc(pid); ok && p.ppid == ppid {
			out = append(out, p)
		}
	}
	return out
}

// descendants lists the processes below pid (not pid itself).
func descendants(pid int) []proc {
	var all []proc
	for _, name := range dirNames("/proc") {
		if n, err := strconv.Atoi(name); err == nil {
			if p, ok := readProc(n); ok {
				all = append(all, p)
			}
		}
	}
	var out []proc
	below := map[int]bool{pid: true}
	for grew := true; grew; {
		grew = false
		for _, p := range all {
			if below[p.ppid] && !below[p.pid] {
				below[p.pid] = true
				out = append(out, p)
				grew = true
			}
		}
	}
	return out
}

var nsLink = regexp.MustCompile(`^net:\[(\d+)\]$`)

// netNamespaces lists the network namespaces pid is in or holds a
// descriptor of.
func netNamespaces(pid int) []uint64 {
	var out []uint64
	add := func(link string) {
		if m := nsLink.FindStringSubmatch(link); m != nil {
			n, _ := strconv.ParseUint(m[1], 10, 64)
			for _, have := range out {
				if have == n {
					return
				}
			}
			out = append(out, n)
		}
	}
	if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil {
		add(l)
	}
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil {
			add(l)
		}
	}
	return out
}

// namespaceHeld tells what still holds the network namespace with the
// given inode: a thread or descriptor of one of procs (what is left of
// the test's descendants: every process that inherited anything from
// otgate-run), or a bind mount (what `ip netns add` makes) of a
// namespace with a lab interface in it. Namespace inodes are reused at
// once, so a namespace of another program may have the same inode now.
func namespaceHeld(inode uint64, procs []proc) string {
	want := fmt.Sprintf("net:[%d]", inode)
	for _, p := range procs {
		paths, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/ns/net", p.pid))
		fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", p.pid))
		for _, path := range append(paths, fds...) {
			if link, err := os.Readlink(path); err == nil && link == want {
				return path + " (" + p.comm + ")"
			}
		}
	}
	for _, mi := range []string{"/proc/self/mountinfo", "/proc/1/mountinfo"} {
		b, _ := os.ReadFile(mi)
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 5 || f[3] != want {
				continue
			}
			out, _ := exec.Command("nsenter", "--net="+f[4], "ip", "-o", "link", "show").CombinedOutput()
			for _, name := range []string{lab.UplinkTap, lab.DownlinkTap, lab.Bridge, lab.PlantVethLab} {
				if strings.Contains(string(out), " "+name+":") || strings.Contains(string(out), " "+name+"@") {
					return "mount " + f[4] + " with " + name
				}
			}
		}
	}
	return ""
}

// hostLinks lists the interfaces of the test's (the host's) namespace.
func hostLinks(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link: %v\n%s", err, out)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			names = append(names, name)
		}
	}
	return names
}

func dirNames(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
