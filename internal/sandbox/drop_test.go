//go:build linux

package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// dropReport is what dropChild prints.
type dropReport struct {
	Before, After []string // every thread's caps
	BindBefore    string   // binding a port below 1024 before the drop ("" ok)
	BindAfter     string   // and after it
}

// dropChild runs as an unprivileged user holding CAP_NET_BIND_SERVICE
// and CAP_NET_RAW as ambient capabilities (as init starts the proxy),
// from a process with several threads; it drops CAP_NET_BIND_SERVICE.
func dropChild() {
	park := make(chan struct{})
	var parked sync.WaitGroup
	for i := 0; i < 4; i++ {
		parked.Add(1)
		go func() { runtime.LockOSThread(); parked.Done(); <-park }()
	}
	parked.Wait()
	bind := func(port int) string {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			return err.Error()
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return err.Error()
		}
		return ""
	}
	rep := dropReport{Before: allThreadCaps(), BindBefore: bind(81)}
	if err := DropCapabilities(unix.CAP_NET_BIND_SERVICE); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	rep.After, rep.BindAfter = allThreadCaps(), bind(82)
	close(park)
	json.NewEncoder(os.Stdout).Encode(rep)
	os.Exit(0)
}

func TestDropCapabilities(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it starts a child as another user with ambient capabilities")
	}
	bin := withoutCgo(t)
	// The test binary must be reachable by the child's user.
	dir, err := os.MkdirTemp("", "otgate-drop-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	exe := filepath.Join(dir, "sandbox.test")
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run", "^$")
	cmd.Env = append(os.Environ(), childEnv+"=drop")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534},
		AmbientCaps: []uintptr{unix.CAP_NET_BIND_SERVICE, unix.CAP_NET_RAW}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	var rep dropReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("child: %v in %q", err, out)
	}
	self, err := threadCaps("self")
	if err != nil {
		t.Fatal(err)
	}
	// Bits 10 (NET_BIND_SERVICE) and 13 (NET_RAW) before; 13 alone after,
	// in every thread, the bounding set untouched.
	line := func(m uint64) string {
		return fmt.Sprintf("CapEff %016x CapPrm %016x CapInh %016x CapBnd %016x CapAmb %016x NoNewPrivs false", m, m, m, self.bnd, m)
	}
	for _, c := range []struct {
		name    string
		threads []string
		want    string
	}{{"before", rep.Before, line(1<<10 | 1<<13)}, {"after", rep.After, line(1 << 13)}} {
		if len(c.threads) < 5 {
			t.Errorf("%s: %d threads, want the parked ones too", c.name, len(c.threads))
		}
		for i, got := range c.threads {
			if got != c.want {
				t.Errorf("%s, thread %d: %s\nwant %s", c.name, i, got, c.want)
			}
		}
	}
	if rep.BindBefore != "" {
		t.Errorf("bind port 81 holding CAP_NET_BIND_SERVICE: %s", rep.BindBefore)
	}
	if rep.BindAfter != unix.EACCES.Error() {
		t.Errorf("bind port 82 after the drop: %q, want %q", rep.BindAfter, unix.EACCES.Error())
	}
}
