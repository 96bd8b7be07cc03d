package netconf

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/internal/sandbox"
	"github.com/otgate/otgate/site"
)

// confineEnv carries the tree's root (and "confine" or "open") to the
// child that TestConfinement re-executes.
const confineEnv = "OTGATE_NETCONF_CONFINE"

// confineReport is the child's line on its standard output.
const confineReport = "CONFINE-REPORT "

// The operations the child tries: the service's own (allowed) and what a
// compromised service must not reach (refused).
var (
	confineAllowed = []string{"policy load", "hint save", "hint load", "hint forget", "resolver write",
		"socket listen", "socket replace stale", "socket connect", "promote_secondaries lo"}
	confineRefused = []string{"sibling state create", "sibling state write", "sibling state read",
		"tpm open", "policy write", "policy dir create", "etc create", "etc passwd write",
		"run other socket remove outside", "sysctl ip_forward write", "perm create"}
)

// TestConfinement applies the service's confinement, built from flags
// laid out as on the device (but in a temporary tree), in a child
// process, and runs the service's file operations there: the policy is
// read, the DHCP hint saved, loaded and forgotten, the resolver files
// written, the socket made (and a stale one replaced), promote_secondaries
// read (in a network namespace of its own). Another service's state, the
// TPM, the policy itself, /etc beyond resolv.conf and /proc/sys/net
// beyond ipv4/conf are refused. Unconfined, the same child does all of
// it: every refusal is the ruleset's.
func TestConfinement(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the refusals show that not even root gets past the ruleset")
	}
	for _, mode := range []string{"open", "confine"} {
		root := confineTree(t)
		cmd := exec.Command(os.Args[0], "-test.run", "^TestConfinementChild$")
		cmd.Env = append(os.Environ(), confineEnv+"="+mode+":"+root)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s child: %v\n%s", mode, err, out)
		}
		var rep struct {
			Err    string
			Files  sandbox.Files
			Policy string
			Ops    map[string]string
		}
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), confineReport); ok {
				if err := json.Unmarshal([]byte(line), &rep); err != nil {
					t.Fatal(err)
				}
			}
		}
		if rep.Ops == nil {
			t.Fatalf("%s child: no report in %q", mode, out)
		}
		if rep.Err != "" {
			t.Fatalf("%s child: %s", mode, rep.Err)
		}
		if mode == "confine" {
			t.Logf("confined to: %s", rep.Files)
		}
		if want := filepath.Join(root, "perm/policy", site.AppliedFile); rep.Policy != want {
			t.Errorf("%s: policy path %q, want the relative flag made absolute: %q", mode, rep.Policy, want)
		}
		for _, op := range confineAllowed {
			if got := rep.Ops[op]; got != "" {
				t.Errorf("%s: %s: %s, want it done", mode, op, got)
			}
		}
		for _, op := range confineRefused {
			got, ok := rep.Ops[op]
			switch {
			case !ok:
				t.Errorf("%s: %s not tried", mode, op)
			case mode == "open" && got != "":
				t.Errorf("unconfined: %s: %s (the probe shows nothing)", op, got)
			case mode == "confine" && !strings.Contains(got, "permission denied"):
				t.Errorf("confined: %s: %q, want permission denied", op, got)
			}
		}
	}
}

// confineTree lays out the device's files under a temporary root: the
// applied policy, other services' state, a TPM stand-in, /etc. The
// netconf state directory, /run/otgate and /etc/resolv.conf do not exist
// yet (as on a first boot).
func confineTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	src := []byte(`site: confine
zones:
  - {name: cell-1, owner: ot, mode: enforce, interface: eth1, subnet: 10.77.0.0/24, gate_address: 10.77.0.1}
`)
	s, err := site.Parse("site.yaml", src, site.Options{})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := site.Compile(s, "site.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	if err := site.Store(filepath.Join(root, "perm/policy"), doc); err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{
		"perm/segment/would-block.cbor": 0o644,
		"perm/identity/key":             0o600,
		"dev/tpmrm0":                    0o600,
		"etc/passwd":                    0o644,
		"run/other.sock":                0o644, // another service's file outside /run/otgate
	} {
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("data"), mode); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// TestConfinementChild is the child of TestConfinement (nothing without
// its environment).
func TestConfinementChild(t *testing.T) {
	arg := os.Getenv(confineEnv)
	if arg == "" {
		t.Skip("the child of TestConfinement")
	}
	mode, root, _ := strings.Cut(arg, ":")
	rep := struct {
		Err    string
		Files  sandbox.Files
		Policy string
		Ops    map[string]string
	}{Ops: map[string]string{}}
	defer func() {
		b, _ := json.Marshal(rep)
		fmt.Printf("%s%s\n", confineReport, b)
		os.Exit(0)
	}()
	// promote_secondaries of a namespace of its own: this thread's, where
	// every operation runs.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		rep.Err = fmt.Sprintf("unshare: %v", err)
		return
	}
	if err := os.Chdir(root); err != nil {
		rep.Err = err.Error()
		return
	}
	var logs []string
	logf := func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }
	// The flags of the device's row, in the tree; the policy relative.
	cfg := Config{
		PolicyPath: filepath.Join("perm/policy", site.AppliedFile),
		SocketPath: filepath.Join(root, "run/otgate/netconf.sock"),
		HintPath:   filepath.Join(root, "perm/netconf/dhcp-hint.cbor"),
		Resolver:   &Resolver{Path: filepath.Join(root, "run/otgate/resolv.conf"), Etc: filepath.Join(root, "etc/resolv.conf"), Logf: logf},
	}
	files, err := Confinement(&cfg, logf)
	if err != nil {
		rep.Err = err.Error()
		return
	}
	rep.Files, rep.Policy = files, cfg.PolicyPath
	if mode == "confine" {
		if err := sandbox.RestrictFiles(files); err != nil {
			rep.Err = err.Error()
			return
		}
	}
	op := func(name string, err error) {
		rep.Ops[name] = ""
		if err != nil {
			rep.Ops[name] = err.Error()
		}
	}
	logged := func() error {
		defer func() { logs = nil }()
		if len(logs) > 0 {
			return fmt.Errorf("%s", strings.Join(logs, "; "))
		}
		return nil
	}

	_, err = site.LoadApplied(cfg.PolicyPath)
	op("policy load", err)

	mac, _ := net.ParseMAC("02:00:00:00:00:01")
	c := &DHCPClient{Link: "eth0", HintPath: cfg.HintPath, hw: mac, Logf: logf}
	addr := netip.MustParseAddr("192.168.10.5")
	c.saveHint(addr)
	op("hint save", logged())
	if got := c.loadHint(); got != addr {
		op("hint load", fmt.Errorf("loaded %v, want %v (%v)", got, addr, logged()))
	} else {
		op("hint load", logged())
	}
	c.saveHint(netip.Addr{})
	err = logged()
	if _, serr := os.Lstat(cfg.HintPath); err == nil && serr == nil {
		err = fmt.Errorf("%s still there", cfg.HintPath)
	}
	op("hint forget", err)

	err = cfg.Resolver.Write("test", []netip.Addr{netip.MustParseAddr("192.168.10.53")}, []string{"plant.example"})
	if err == nil {
		err = logged()
	}
	for _, p := range []string{cfg.Resolver.Path, cfg.Resolver.Etc} {
		if b, rerr := os.ReadFile(p); err == nil && (rerr != nil || !strings.Contains(string(b), "nameserver 192.168.10.53")) {
			err = fmt.Errorf("%s: %q, %v", p, b, rerr)
		}
	}
	op("resolver write", err)

	l, err := listen(cfg.SocketPath)
	op("socket listen", err)
	if err == nil {
		l.(*net.UnixListener).SetUnlinkOnClose(false)
		l.Close() // leaves a stale socket
		l, err = listen(cfg.SocketPath)
		op("socket replace stale", err)
		if err == nil {
			conn, err := net.Dial("unix", cfg.SocketPath)
			if err == nil {
				conn.Close()
			}
			op("socket connect", err)
			l.Close()
		}
	}

	_, err = promoteSecondaries(0, "lo")
	op("promote_secondaries lo", err)

	write := func(path string) error { // open an existing file for writing
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		return f.Close()
	}
	create := func(path string) error { return os.WriteFile(path, []byte("x"), 0o600) }
	op("sibling state create", create(filepath.Join(root, "perm/segment/new")))
	op("sibling state write", write(filepath.Join(root, "perm/segment/would-block.cbor")))
	_, err = os.ReadFile(filepath.Join(root, "perm/identity/key"))
	op("sibling state read", err)
	op("perm create", create(filepath.Join(root, "perm/new")))
	f, err := os.OpenFile(filepath.Join(root, "dev/tpmrm0"), os.O_RDWR, 0)
	if err == nil {
		f.Close()
	}
	op("tpm open", err)
	op("policy write", write(cfg.PolicyPath))
	op("policy dir create", create(filepath.Join(filepath.Dir(cfg.PolicyPath), "applied.cbor.new")))
	op("etc create", create(filepath.Join(root, "etc/resolv.conf.new")))
	op("etc passwd write", write(filepath.Join(root, "etc/passwd")))
	op("run other socket remove outside", os.Remove(filepath.Join(root, "run/other.sock")))
	op("sysctl ip_forward write", write(filepath.Join(procSysNet, "ipv4/ip_forward")))
}
