//go:build linux

package sandbox

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// capsReport is what capsChild prints.
type capsReport struct {
	Threads  []string          // each thread's caps after the change
	Probes   map[string]string // probe -> "" or the error
	ExecCaps string            // /proc/self/status of an exec'd program
}

// keptCaps are what capsChild keeps: one a probe can show harmlessly.
var keptCaps = []uintptr{unix.CAP_NET_BIND_SERVICE}

// allThreadCaps lists every thread's capability sets (threadCaps).
func allThreadCaps() []string {
	var out []string
	tasks, _ := filepath.Glob("/proc/self/task/*")
	for _, t := range tasks {
		if c, err := threadCaps("self/task/" + filepath.Base(t)); err == nil {
			out = append(out, c.String())
		}
	}
	return out
}

// capsChild limits itself to keptCaps, from a process with several
// threads, and reports what it can still do.
func capsChild() {
	// Threads that exist before the change, parked.
	park := make(chan struct{})
	for i := 0; i < 4; i++ {
		go func() { runtime.LockOSThread(); <-park }()
	}
	if err := LimitCapabilities(keptCaps...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if strings.Contains(err.Error(), "linked with cgo") {
			os.Exit(5)
		}
		os.Exit(3)
	}
	rep := capsReport{Probes: map[string]string{}, Threads: allThreadCaps()}
	dir := os.Getenv("OTGATE_SANDBOX_DIR")
	other := filepath.Join(dir, "other-user")
	for name, call := range map[string]func() error{
		"bind port 80 (kept)": func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.Bind(fd, &unix.SockaddrInet4{Port: 80, Addr: [4]byte{127, 0, 0, 1}})
		},
		"packet socket": sock(unix.AF_PACKET, unix.SOCK_RAW, htons(unix.ETH_P_ALL)),
		"chown":         func() error { return os.Chown(filepath.Join(dir, "mine"), 1234, 1234) },
		"read another user's file": func() error {
			f, err := os.Open(other)
			if err == nil {
				f.Close()
			}
			return err
		},
		"write root's own file": func() error { return os.WriteFile(filepath.Join(dir, "mine"), []byte("x"), 0o600) },
	} {
		if err := call(); err != nil {
			rep.Probes[name] = err.Error()
		} else {
			rep.Probes[name] = ""
		}
	}
	out, err := exec.Command("/bin/cat", "/proc/self/status").Output()
	if err != nil {
		rep.ExecCaps = "exec: " + err.Error()
	} else {
		for _, l := range strings.Split(string(out), "\n") {
			if (strings.HasPrefix(l, "Cap") && !strings.HasPrefix(l, "CapBnd")) || strings.HasPrefix(l, "NoNewPrivs") {
				rep.ExecCaps += strings.Join(strings.Fields(l), " ") + "; "
			}
		}
	}
	// A program carrying the file capability CAP_DAC_OVERRIDE gains
	// nothing either (no_new_privs), the bounding set left full.
	if out, err := exec.Command(filepath.Join(dir, "capcat"), other).CombinedOutput(); err != nil {
		rep.Probes["file-capability program reads another user's file"] = strings.TrimSpace(string(out))
	} else {
		rep.Probes["file-capability program reads another user's file"] = ""
	}
	close(park)
	json.NewEncoder(os.Stdout).Encode(rep)
	os.Exit(0)
}

func TestLimitCapabilities(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it limits a root process's capabilities")
	}
	// A directory others may pass through (t.TempDir's parents are
	// 0700), for the file-capability control run as nobody.
	dir, err := os.MkdirTemp("", "otgate-sandbox-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mine"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other-user")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(other, 4321, 4321); err != nil {
		t.Fatal(err)
	}
	// capcat: cat with the file capability CAP_DAC_OVERRIDE, effective
	// (security.capability, struct vfs_cap_data revision 2).
	cat, err := os.ReadFile("/bin/cat")
	if err != nil {
		t.Fatal(err)
	}
	capcat := filepath.Join(dir, "capcat")
	if err := os.WriteFile(capcat, cat, 0o755); err != nil {
		t.Fatal(err)
	}
	xattr := binary.LittleEndian.AppendUint32(nil, 0x02000000|1)      // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
	for _, v := range []uint32{1 << unix.CAP_DAC_OVERRIDE, 0, 0, 0} { // permitted, inheritable: low, high
		xattr = binary.LittleEndian.AppendUint32(xattr, v)
	}
	if err := unix.Setxattr(capcat, "security.capability", xattr, 0); err != nil {
		t.Fatalf("set the file capability: %v", err)
	}
	// As a plain user it would read the file: the capability is real.
	asUser := exec.Command(capcat, other)
	asUser.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := asUser.CombinedOutput(); err != nil {
		t.Fatalf("control: capcat as nobody: %v %s", err, out)
	}
	cmd := exec.Command(withoutCgo(t), "-test.run", "^$")
	cmd.Env = append(os.Environ(), childEnv+"=caps", "OTGATE_SANDBOX_DIR="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if cmd.ProcessState != nil && cmd.ProcessState.ExitCode() == 5 {
		t.Fatalf("the child is linked with cgo: LimitCapabilities cannot work in it")
	}
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	var rep capsReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("child: %v in %q", err, out)
	}
	// Only CAP_NET_BIND_SERVICE (bit 10), in every thread; the bounding
	// set as it was.
	self, err := threadCaps("self") // the bounding set this child started with
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("CapEff 0000000000000400 CapPrm 0000000000000400 CapInh 0000000000000000 CapBnd %016x CapAmb 0000000000000000 NoNewPrivs true", self.bnd)
	if len(rep.Threads) < 5 {
		t.Errorf("child had %d threads, want the parked ones too", len(rep.Threads))
	}
	for i, c := range rep.Threads {
		if c != want {
			t.Errorf("thread %d: %s\nwant      %s", i, c, want)
		}
	}
	eperm := unix.EPERM.Error()
	for name, wantErr := range map[string]string{
		"bind port 80 (kept)":      "",
		"write root's own file":    "",
		"packet socket":            eperm,
		"chown":                    "chown " + filepath.Join(dir, "mine") + ": " + eperm,
		"read another user's file": "open " + other + ": permission denied",
		"file-capability program reads another user's file": capcat + ": " + other + ": Permission denied",
	} {
		if got := rep.Probes[name]; got != wantErr {
			t.Errorf("%s: %q, want %q", name, got, wantErr)
		}
	}
	// A program it runs, as uid 0, gets nothing back (SECBIT_NOROOT).
	if w := "CapInh: 0000000000000000; CapPrm: 0000000000000000; CapEff: 0000000000000000; CapAmb: 0000000000000000; NoNewPrivs: 1; "; rep.ExecCaps != w {
		t.Errorf("exec'd program: %s\nwant %s", rep.ExecCaps, w)
	}
}

func TestLimitCapabilitiesRefusesWhatItLacks(t *testing.T) {
	if _, err := lastCap(); err != nil {
		t.Fatal(err)
	}
	// 63 is past every kernel's last capability.
	if err := LimitCapabilities(63); err == nil || !strings.Contains(err.Error(), "the kernel's last is") {
		t.Fatalf("capability 63: %v", err)
	}
}

// withoutCgo is this package's test binary built without cgo, as the
// images build the services: LimitCapabilities works on every thread
// through AllThreadsSyscall, which a cgo binary cannot make. When this
// test binary has cgo (CGO_ENABLED=1 links it in: go-landlock's psx
// package uses it), the child is a second build made with CGO_ENABLED=0.
func withoutCgo(t *testing.T) string {
	t.Helper()
	if !testCgo {
		return os.Args[0]
	}
	bin := filepath.Join(t.TempDir(), "sandbox.test")
	build := exec.Command("go", "test", "-c", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the test binary without cgo: %v\n%s", err, out)
	}
	return bin
}
