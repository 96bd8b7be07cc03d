//go:build linux

package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const otherPidEnv = "OTGATE_SANDBOX_OTHER_PID"

// signalsChild acts on another process (the test's sleeper) and on
// itself, with or without KeepToItself, and reports each outcome ("" for
// success).
func signalsChild(filter bool) {
	other, _ := strconv.Atoi(os.Getenv(otherPidEnv))
	got := map[string]string{}
	do := func(name string, err error) {
		got[name] = ""
		if err != nil {
			got[name] = err.Error()
		}
	}
	if filter {
		if err := KeepToItself(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
	}
	self := os.Getpid()
	do("kill other", unix.Kill(other, 0))
	do("kill other SIGCONT", unix.Kill(other, syscall.SIGCONT)) // harmless if it gets through
	do("kill group", unix.Kill(0, 0))
	do("kill all", unix.Kill(-1, 0))
	do("tgkill other", unix.Tgkill(other, other, 0))
	do("tkill other", errnoOf(unix.Syscall(unix.SYS_TKILL, uintptr(other), 0, 0)))
	if fd, err := unix.PidfdOpen(other, 0); err == nil {
		do("pidfd_send_signal other", unix.PidfdSendSignal(fd, 0, nil, 0))
		unix.Close(fd)
	} else {
		do("pidfd_send_signal other", err)
	}
	do("ptrace other", errnoOf(unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_ATTACH, uintptr(other), 0, 0, 0, 0)))
	if got["ptrace other"] == "" {
		unix.PtraceDetach(other)
	}
	do("kill self", unix.Kill(self, 0))
	do("tgkill self", unix.Tgkill(self, unix.Gettid(), 0))
	// A signal raised on itself arrives.
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	err := unix.Kill(self, syscall.SIGUSR1)
	if err == nil {
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			err = fmt.Errorf("SIGUSR1 raised on itself did not arrive")
		}
	}
	do("signal self", err)
	// No other process: fork and exec (os/exec: clone3, then clone
	// with CLONE_VFORK) ...
	do("start a process", exec.Command("/bin/true").Run())
	// ... nor clone3, fork or vfork called directly.
	args := cloneArgs{exitSignal: uint64(syscall.SIGCHLD)}
	do("clone3 a process", rawProcess(unix.SYS_CLONE3, uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args)))
	for _, nr := range forkCalls {
		do(fmt.Sprintf("system call %d", nr), rawProcess(uintptr(nr), 0, 0))
	}
	// ... but threads: 16 goroutines locked to their threads at once
	// need 16 threads.
	do("make threads", makeThreads(16))
	json.NewEncoder(os.Stdout).Encode(got)
	os.Exit(0)
}

// cloneArgs is the head of struct clone_args (linux/sched.h): flags,
// pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls (64
// bytes, CLONE_ARGS_SIZE_VER0).
type cloneArgs struct {
	flags, pidfd, childTID, parentTID, exitSignal, stack, stackSize, tls uint64
}

// rawProcess makes a process with system call nr (clone3, fork, vfork)
// whose child exits at once, and waits for it.
func rawProcess(nr, a1, a2 uintptr) error {
	pid, _, e := unix.RawSyscall(nr, a1, a2, 0)
	if e != 0 {
		return e
	}
	if pid == 0 { // the child: one thread, no runtime; leave at once
		unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
	}
	_, err := unix.Wait4(int(pid), nil, 0, nil)
	return err
}

// makeThreads has n goroutines hold an OS thread each at the same time
// and checks that the process then has at least n threads.
func makeThreads(n int) error {
	var ready, done sync.WaitGroup
	ready.Add(n)
	done.Add(n)
	release := make(chan struct{})
	for range n {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			ready.Done()
			<-release
			done.Done()
		}()
	}
	ready.Wait()
	b, err := os.ReadFile("/proc/self/status")
	close(release)
	done.Wait()
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			if k, _ := strconv.Atoi(strings.TrimSpace(v)); k < n {
				return fmt.Errorf("%d threads, want at least %d", k, n)
			}
			return nil
		}
	}
	return fmt.Errorf("no Threads line in /proc/self/status")
}

func errnoOf(_, _ uintptr, e syscall.Errno) error {
	if e != 0 {
		return e
	}
	return nil
}

func TestKeepToItself(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: shows what uid 0 may do to another uid-0 process without the filter")
	}
	sleeper := startSleeper(t)
	run := func(mode string) map[string]string { return otherProbes(t, os.Args[0], mode, sleeper) }
	self := map[string]bool{"kill self": true, "tgkill self": true, "signal self": true, "make threads": true}
	// Without the filter root does all of it: each refusal below is the
	// filter's.
	for name, e := range run("signals-open") {
		if e != "" {
			t.Fatalf("without the filter %s failed: %s (the probe shows nothing here)", name, e)
		}
	}
	got := run("signals")
	if want := 14 + len(forkCalls); len(got) != want {
		t.Fatalf("child ran %d probes, want %d: %v", len(got), want, got)
	}
	for name, e := range got {
		switch {
		case self[name] && e != "":
			t.Errorf("%s under the filter: %s, want it to work", name, e)
		case name == "start a process" && !strings.HasSuffix(e, unix.EPERM.Error()):
			t.Errorf("%s under the filter: %q, want it to end in %q", name, e, unix.EPERM.Error())
		case name == "clone3 a process" && e != unix.ENOSYS.Error():
			t.Errorf("%s under the filter: %q, want %q", name, e, unix.ENOSYS.Error())
		case !self[name] && name != "start a process" && name != "clone3 a process" && e != unix.EPERM.Error():
			t.Errorf("%s under the filter: %q, want %q", name, e, unix.EPERM.Error())
		}
	}
	if err := sleeper.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the sleeper is gone: %v", err)
	}
}

// startSleeper starts a root process for the probes to aim at, killed
// at the test's end.
func startSleeper(t *testing.T) *exec.Cmd {
	t.Helper()
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	return sleeper
}

// otherProbes runs the test binary bin as the child mode, aimed at
// other (otherPidEnv), and returns its report: probe -> "" or the error.
func otherProbes(t *testing.T, bin, mode string, other *exec.Cmd) map[string]string {
	t.Helper()
	cmd := exec.Command(bin, "-test.run", "^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, otherPidEnv+"="+strconv.Itoa(other.Process.Pid))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child %s: %v", mode, err)
	}
	var got map[string]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("child %s: %v in %q", mode, err, out)
	}
	return got
}
