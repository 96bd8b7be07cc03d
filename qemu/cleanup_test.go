package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otgate/otgate/qemu/lab"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// The leak tests run a helper test in a child test binary that starts a lab
// and a VM with swtpm, records what it started, and then fails, panics or
// is killed outright. The parent checks that no QEMU or swtpm process, no
// namespace and no host interface is left.

const helperEnv = "OTGATE_QEMU_LEAK_HELPER" // "fail", "panic" or "hang", then ":" and the record file

func TestLeakHelper(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("helper for TestNothingLeaks, run in a child process")
	}
	mode, record, _ := strings.Cut(spec, ":")
	b := mustBoard(t, "qemu-x86_64")
	img := testImage(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := lab.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	sleeper := l.Plant.Command("sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	// Namespace inodes are reused at once, and other test binaries create
	// lab namespaces meanwhile: the parent tells this helper's namespaces
	// apart by a tag on their loopback interface.
	tag := fmt.Sprintf("otgate-leak-%d-%d", os.Getpid(), time.Now().UnixNano())
	for _, ns := range []*lab.Namespace{l.Uplink, l.Plant} {
		if err := ns.Do(func() error { return tagLoopback(tag) }); err != nil {
			t.Fatal(err)
		}
	}
	vm := StartT(t, b, "", img, WithLab(l), WithTPM(t.TempDir()), WithCmdline("testinit.then=wait"))
	if _, err := vm.WaitFor(ctx, "testinit: waiting"); err != nil {
		t.Fatal(err)
	}
	rec := fmt.Sprintf("pids %d %d %d\nnetns %d %d\ntag %s\n", vm.PID(), vm.TPMPID(), sleeper.Process.Pid,
		l.Uplink.Inode(), l.Plant.Inode(), tag)
	if err := os.WriteFile(record+".tmp", []byte(rec), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(record+".tmp", record); err != nil {
		t.Fatal(err)
	}
	switch mode {
	case "fail":
		t.Fatal("helper fails on purpose")
	case "panic":
		panic("helper panics on purpose")
	case "hang":
		time.Sleep(10 * time.Minute) // the parent kills this process
	}
}

func TestNothingLeaks(t *testing.T) {
	b := mustBoard(t, "qemu-x86_64")
	requireQEMU(t, b, "swtpm", "nsenter", "ip")
	testKernel(t, b) // skip early when the kernel is not cached
	for _, mode := range []string{"fail", "panic", "hang"} {
		t.Run(mode, func(t *testing.T) {
			before := hostLinks(t)
			record := filepath.Join(t.TempDir(), "record")
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestLeakHelper$", "-test.count=1", "-test.v")
			// The helper's temporary files go below this test's directory, so a
			// helper killed outright leaves nothing in /tmp either.
			cmd.Env = append(os.Environ(), helperEnv+"="+mode+":"+record, "TMPDIR="+t.TempDir())
			out := &tailBuffer{max: 16 << 10}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if mode == "hang" {
				if err := waitFile(ctx, record); err != nil {
					_ = cmd.Process.Kill()
					t.Fatalf("helper never recorded its processes: %v\n%s", err, out)
				}
				_ = cmd.Process.Signal(syscall.SIGKILL)
			}
			err := cmd.Wait()
			if err == nil {
				t.Fatalf("helper in mode %s passed; it must fail:\n%s", mode, out)
			}
			data, rerr := os.ReadFile(record)
			if rerr != nil {
				t.Fatalf("helper left no record (%v):\n%s", rerr, out)
			}
			var q, swtpm, sleeper int
			var labNS, plantNS uint64
			var tag string
			if _, err := fmt.Sscanf(string(data), "pids %d %d %d\nnetns %d %d\ntag %s\n", &q, &swtpm, &sleeper, &labNS, &plantNS, &tag); err != nil {
				t.Fatalf("record %q: %v", data, err)
			}
			for _, p := range []struct {
				pid  int
				what string
			}{{q, "qemu"}, {swtpm, "swtpm"}, {sleeper, "plant process"}} {
				if err := waitGone(ctx, p.pid); err != nil {
					t.Errorf("%s (pid %d) survived a helper that ended by %s: %v", p.what, p.pid, mode, err)
				}
			}
			for _, ino := range []uint64{labNS, plantNS} {
				if ref := labNamespaceLeft(ino, tag); ref != "" {
					t.Errorf("lab network namespace net:[%d] still alive (%s) after the helper ended by %s", ino, ref, mode)
				}
			}
			for _, n := range newLinks(before, hostLinks(t)) {
				switch n {
				case lab.UplinkTap, lab.DownlinkTap, lab.Bridge, lab.PlantVethLab:
					t.Errorf("lab interface %s left in the host namespace", n)
				default:
					t.Logf("host namespace gained %s meanwhile (another program's)", n)
				}
			}
			if t.Failed() {
				return
			}
			t.Logf("helper ended by %s; processes %d %d %d and namespaces %d %d gone", mode, q, swtpm, sleeper, labNS, plantNS)
		})
	}
}

func waitFile(ctx context.Context, path string) error {
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitGone waits until pid no longer exists (zombies of other parents
// count as gone only when reaped; these are all children of the helper,
// which is dead, so init reaps them).
func waitGone(ctx context.Context, pid int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("still there: %s", stat)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// hostLinks lists the interfaces of this process's (the host's) network
// namespace.
func hostLinks(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link: %v\n%s", err, out)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			names = append(names, strings.TrimSuffix(f[1], ":"))
		}
	}
	return names
}

func newLinks(before, after []string) []string {
	had := map[string]bool{}
	for _, n := range before {
		had[n] = true
	}
	var added []string
	for _, n := range after {
		if !had[n] {
			added = append(added, n)
		}
	}
	return added
}

// tagLoopback sets the alias of the loopback interface of the calling
// thread's network namespace.
func tagLoopback(tag string) error {
	h, err := netlink.NewHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	return h.LinkSetAlias(lo, tag)
}

// labNamespaceLeft tells whether the helper's network namespace with the
// given inode is still alive: referenced by a process's descriptor or
// thread, or bind-mounted (what `ip netns add` makes). Namespace inodes are
// reused at once, and other tests create lab namespaces of their own at the
// same time, so a namespace counts only when its loopback carries the
// helper's tag. It returns what holds it.
func labNamespaceLeft(inode uint64, tag string) string {
	want := fmt.Sprintf("net:[%d]", inode)
	for _, pattern := range []string{"/proc/[0-9]*/task/*/ns/net", "/proc/[0-9]*/fd/*"} {
		paths, _ := filepath.Glob(pattern)
		for _, p := range paths {
			if link, err := os.Readlink(p); err == nil && link == want && namespaceTagged(p, tag) {
				return p
			}
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) >= 5 && f[3] == want && namespaceTagged(f[4], tag) {
			return "mount " + f[4]
		}
	}
	return ""
}

// namespaceTagged tells whether the network namespace at path has a
// loopback interface whose alias is tag.
func namespaceTagged(path, tag string) bool {
	h, err := netns.GetFromPath(path)
	if err != nil {
		return false
	}
	nl, err := netlink.NewHandleAt(h)
	h.Close()
	if err != nil {
		return false
	}
	defer nl.Close()
	lo, err := nl.LinkByName("lo")
	return err == nil && lo.Attrs().Alias == tag
}
