//go:build linux

package sandbox

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The probes run in a child process (this test binary again), because the
// filter cannot be taken off the process that installs it.
const childEnv = "OTGATE_SANDBOX_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "x32":
		x32Child()
	case "caps":
		capsChild()
	case "files":
		filesChild()
	case "procsys":
		procSysChild()
	case "lockdown":
		lockDownChild()
	case "drop":
		dropChild()
	case "signals", "signals-open":
		signalsChild(os.Getenv(childEnv) == "signals")
	default:
		probeChild(os.Getenv(childEnv) == "filter")
	}
}

// probe is one system call the child makes: its name and the errno it got
// ("" for success).
type probe struct {
	name string
	call func() error
}

// A socket that must be closed if the call succeeds.
func sock(domain, typ, proto int) func() error {
	return func() error {
		fd, err := unix.Socket(domain, typ, proto)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}
}

func sockopt(domain, level, opt int) func() error {
	return func() error {
		fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		defer unix.Close(fd)
		return unix.SetsockoptInt(fd, level, opt, 1)
	}
}

func htons(v uint16) int { return int(v>>8 | v<<8&0xff00) }

var probes = []probe{
	{"packet raw", sock(unix.AF_PACKET, unix.SOCK_RAW, htons(unix.ETH_P_ALL))},
	{"packet dgram", sock(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, htons(unix.ETH_P_IP))},
	{"inet raw icmp", sock(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)},
	{"inet raw (hdrincl) nonblock", sock(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)},
	{"inet6 raw", sock(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6)},
	{"inet SOCK_PACKET", sock(unix.AF_INET, unix.SOCK_PACKET, htons(unix.ETH_P_ALL))},
	{"IP_TRANSPARENT", sockopt(unix.AF_INET, unix.SOL_IP, unix.IP_TRANSPARENT)},
	{"IPV6_TRANSPARENT", sockopt(unix.AF_INET6, unix.SOL_IPV6, unix.IPV6_TRANSPARENT)},
	{"io_uring_setup", func() error {
		var params [120]byte // struct io_uring_params
		fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
		if e != 0 {
			return e
		}
		unix.Close(int(fd))
		return nil
	}},
	// What the proxy does, which must keep working.
	{"tcp socket", sock(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)},
	{"udp6 socket", sock(unix.AF_INET6, unix.SOCK_DGRAM, 0)},
	{"unix socket", sock(unix.AF_UNIX, unix.SOCK_STREAM, 0)},
	{"SO_MARK", sockopt(unix.AF_INET, unix.SOL_SOCKET, unix.SO_MARK)},
	{"IP_TOS", sockopt(unix.AF_INET, unix.SOL_IP, unix.IP_TOS)},
	{"IPV6_V6ONLY", sockopt(unix.AF_INET6, unix.SOL_IPV6, unix.IPV6_V6ONLY)},
	{"tcp exchange", tcpExchange},
}

// mustWork are the probes the filter must leave alone.
var mustWork = map[string]bool{
	"tcp socket": true, "udp6 socket": true, "unix socket": true, "SO_MARK": true,
	"IP_TOS": true, "IPV6_V6ONLY": true, "tcp exchange": true,
}

// tcpExchange sends bytes through a loopback TCP connection. It uses
// system calls, not package net, which would link cgo into this test
// binary where cgo is on (LimitCapabilities cannot work there).
func tcpExchange() error {
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(ln)
	if err := unix.Bind(ln, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return err
	}
	if err := unix.Listen(ln, 1); err != nil {
		return err
	}
	sa, err := unix.Getsockname(ln)
	if err != nil {
		return err
	}
	c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(c)
	if err := unix.Connect(c, sa); err != nil {
		return err
	}
	s, _, err := unix.Accept(ln)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	if _, err := unix.Write(c, []byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if n, err := unix.Read(s, buf); err != nil || string(buf[:n]) != "ping" {
		return fmt.Errorf("read %q: %v", buf[:n], err)
	}
	return nil
}

// childReport is what probeChild prints.
type childReport struct {
	Results    map[string]string // probe -> "" or the error
	Other      map[string]string // the same probes from a thread made before the filter
	Seccomp    string            // /proc/self/status
	NoNewPrivs string
}

func run(ps []probe) map[string]string {
	out := map[string]string{}
	for _, p := range ps {
		if err := p.call(); err != nil {
			out[p.name] = err.Error()
		} else {
			out[p.name] = ""
		}
	}
	return out
}

// probeChild runs the probes, with or without the filter, on the thread
// that installed it and on a thread that existed before it (TSYNC).
func probeChild(filter bool) {
	start, done := make(chan struct{}), make(chan map[string]string)
	go func() {
		runtime.LockOSThread() // this thread, and no other, runs the probes below
		<-start
		done <- run(probes)
	}()
	if filter {
		if err := DenyRawNetwork(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
	}
	rep := childReport{Results: run(probes)}
	close(start)
	rep.Other = <-done
	f, err := os.Open("/proc/self/status")
	if err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ":")
			switch k {
			case "Seccomp":
				rep.Seccomp = strings.TrimSpace(v)
			case "NoNewPrivs":
				rep.NoNewPrivs = strings.TrimSpace(v)
			}
		}
		f.Close()
	}
	json.NewEncoder(os.Stdout).Encode(rep)
	os.Exit(0)
}

func runChild(t *testing.T, mode string) childReport {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child %s: %v", mode, err)
	}
	var rep childReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("child %s: %v in %q", mode, err, out)
	}
	return rep
}

func TestDenyRawNetwork(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the probes show what CAP_NET_RAW allows without the filter")
	}
	// Without the filter every probe works: the probes are meaningful on
	// this kernel (root holds CAP_NET_RAW and CAP_NET_ADMIN).
	open := runChild(t, "none")
	for _, p := range probes {
		if e := open.Results[p.name]; e != "" {
			t.Fatalf("without the filter, %s failed: %s (the probe shows nothing here)", p.name, e)
		}
	}
	if open.Seccomp != "0" {
		t.Fatalf("without the filter: Seccomp %q", open.Seccomp)
	}

	shut := runChild(t, "filter")
	if shut.Seccomp != "2" || shut.NoNewPrivs != "1" {
		t.Errorf("with the filter: Seccomp %q NoNewPrivs %q, want 2 and 1", shut.Seccomp, shut.NoNewPrivs)
	}
	eperm := unix.EPERM.Error()
	for _, p := range probes {
		for thread, got := range map[string]string{"installing thread": shut.Results[p.name], "older thread": shut.Other[p.name]} {
			switch {
			case mustWork[p.name] && got != "":
				t.Errorf("%s, %s: %s, want it to work", p.name, thread, got)
			case !mustWork[p.name] && got != eperm:
				t.Errorf("%s, %s: %q, want %q", p.name, thread, got, eperm)
			}
		}
	}
}

// x32Child makes an x32 system call (getpid with bit 30) after installing
// the filter, which must kill it.
func x32Child() {
	if x32Bit == 0 {
		os.Exit(4)
	}
	if err := DenyRawNetwork(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	_, _, e := unix.RawSyscall(uintptr(x32Bit)|unix.SYS_GETPID, 0, 0, 0)
	fmt.Printf("x32 getpid returned, errno %d\n", e)
	os.Exit(0)
}

func TestOtherABIKills(t *testing.T) {
	if x32Bit == 0 {
		t.Skip("no x32 ABI on " + runtime.GOARCH)
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), childEnv+"=x32")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("child: %v, %q: want it killed", err, out)
	}
	ws := ee.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != unix.SIGSYS {
		t.Fatalf("child: %v (%q), want killed by SIGSYS", err, out)
	}
}

func TestFilterAssembles(t *testing.T) {
	prog, err := rawNetworkFilter()
	if err != nil {
		t.Fatal(err)
	}
	if len(prog) == 0 || len(prog) > 4096 {
		t.Fatalf("%d instructions", len(prog))
	}
	// The last instructions are the two verdicts the jumps lead to.
	if prog[len(prog)-1].K != retKill || prog[len(prog)-2].K != retEPERM {
		t.Fatalf("tail %+v", prog[len(prog)-2:])
	}
	var a asm
	a.jeq(1, "nowhere", "")
	if _, err := a.assemble(); err == nil || !strings.Contains(err.Error(), `no label "nowhere"`) {
		t.Fatalf("unknown label: %v", err)
	}
}
