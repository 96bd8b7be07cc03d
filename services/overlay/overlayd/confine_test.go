package overlayd

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/sandbox/sandboxtest"
	"github.com/otgate/otgate/services/overlay/alloc"
	"github.com/otgate/otgate/site"
)

// The confined child gets the layout from confineEnv (JSON) and prints
// its report, after confineMark, on its standard output.
const (
	confineEnv  = "OTGATE_OVERLAY_CONFINE"
	confineMark = "CONFINE-REPORT "
)

type confineLayout struct {
	Policy, State, Socket string
	Identity, TPM         string // another service's state file, the TPM stand-in
}

type confineReport struct {
	Err    string            // confine's
	Probes map[string]string // probe -> "" (done) or its error
}

const policySite = `site: test-plant
zones:
  - {name: cell-1, owner: ot, mode: enforce, interface: eth1, subnet: 10.10.1.0/24, gate_address: 10.10.1.1}
assets:
  - {name: plc-1, zone: cell-1, address: 10.10.1.10, services: [{protocol: modbus}]}
`

// TestConfinement runs the service's file operations confined as Main
// confines it, in a tree laid out like the device: the policy loaded,
// the allocation table (and its mirror) saved, a leftover temporary file
// removed and the table read back, the stale socket replaced, all done;
// another service's state, the TPM, the policy and the socket directory's
// neighbours outside it cannot be written, nor the TPM opened.
func TestConfinement(t *testing.T) {
	if os.Getenv(confineEnv) != "" {
		confineChild()
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: the probes show that not even root gets past the ruleset")
	}
	dir := t.TempDir()
	mk := func(rel, content string) string {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	src := []byte(policySite)
	s, err := site.Parse("site.yaml", src, site.Options{})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := site.Compile(s, "site.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	if err := site.Store(filepath.Join(dir, "perm/policy"), doc); err != nil {
		t.Fatal(err)
	}
	lay := confineLayout{
		Policy:   filepath.Join(dir, "perm/policy", site.AppliedFile),
		State:    filepath.Join(dir, "perm/overlay/alloc.cbor"), // the directory is made by confine
		Socket:   mk("run/otgate/overlay.sock", "stale"),
		Identity: mk("perm/identity/seal", "sealed"),
		TPM:      mk("dev/tpmrm0", ""),
	}
	if err := os.Remove(lay.Socket); err != nil { // a stale socket, not a file (listen replaces only those)
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", lay.Socket)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	b, err := json.Marshal(lay)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestConfinement$")
	cmd.Env = append(os.Environ(), confineEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	i := strings.Index(string(out), confineMark)
	if i < 0 {
		t.Fatalf("child: no report in %q", out)
	}
	var rep confineReport
	if err := json.Unmarshal(out[i+len(confineMark):], &rep); err != nil {
		t.Fatalf("child: %v in %q", err, out)
	}
	if rep.Err != "" {
		t.Fatalf("confine: %s", rep.Err)
	}
	for _, p := range []string{"policy", "state saved", "state reloaded", "socket"} {
		if got, ok := rep.Probes[p]; !ok || got != "" {
			t.Errorf("confined: %s: %q, want it done", p, got)
		}
	}
	for _, p := range []string{"write identity state", "create in identity dir", "open tpm", "write policy",
		"create in policy dir", "create beside the run dir", "read /etc/passwd"} {
		if got, ok := rep.Probes[p]; !ok || !strings.Contains(got, "permission denied") {
			t.Errorf("confined: %s: %q, want permission denied", p, got)
		}
	}
	if t.Failed() {
		t.Logf("report: %+v", rep)
	}
}

// confineChild confines itself as Main does and runs the probes.
func confineChild() {
	var l confineLayout
	if err := json.Unmarshal([]byte(os.Getenv(confineEnv)), &l); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	rep := confineReport{Probes: map[string]string{}}
	defer func() {
		b, _ := json.Marshal(rep)
		fmt.Printf("\n%s%s\n", confineMark, b)
		os.Exit(0)
	}()
	if _, err := confine(l.Policy, l.State, l.Socket); err != nil {
		rep.Err = err.Error()
		return
	}
	probe := func(name string, f func() error) {
		if err := f(); err != nil {
			rep.Probes[name] = err.Error()
		} else {
			rep.Probes[name] = ""
		}
	}
	probe("policy", func() error {
		a, err := site.LoadApplied(l.Policy)
		if err == nil && len(a.Site.Assets) != 1 {
			err = fmt.Errorf("%d assets", len(a.Site.Assets))
		}
		return err
	})
	probe("state saved", func() error {
		a, err := alloc.Open(l.State)
		if err != nil {
			return err
		}
		_, err = a.Apply(alloc.Config{}, []alloc.Request{{Asset: "plc-1", Zone: "cell-1"}}, time.Now())
		return err
	})
	probe("state reloaded", func() error {
		// A write cut short left a temporary file, which Open removes;
		// the mirror lost is written again from the state file.
		tmp := filepath.Join(filepath.Dir(l.State), ".tmp-alloc.cbor-1")
		if err := os.WriteFile(tmp, []byte("partial"), 0o600); err != nil {
			return err
		}
		if err := os.Remove(alloc.MirrorPath(l.State)); err != nil {
			return err
		}
		if _, err := alloc.Open(l.State); err != nil {
			return err
		}
		if _, err := os.Stat(alloc.MirrorPath(l.State)); err != nil {
			return err
		}
		t, err := alloc.ReadTable(l.State)
		if err == nil && len(t) != 1 {
			err = fmt.Errorf("table %v", t)
		}
		return err
	})
	probe("socket", func() error {
		// As the service's listen: the stale socket removed, a new one.
		if err := os.Remove(l.Socket); err != nil {
			return err
		}
		ln, err := net.Listen("unix", l.Socket)
		if err != nil {
			return err
		}
		return ln.Close()
	})
	probe("write identity state", sandboxtest.Write(l.Identity))
	probe("create in identity dir", sandboxtest.Create(filepath.Dir(l.Identity)))
	probe("open tpm", sandboxtest.OpenRW(l.TPM))
	probe("write policy", sandboxtest.Write(l.Policy))
	probe("create in policy dir", sandboxtest.Create(filepath.Dir(l.Policy)))
	probe("create beside the run dir", sandboxtest.Create(filepath.Dir(filepath.Dir(l.Socket))))
	probe("read /etc/passwd", sandboxtest.Read("/etc/passwd"))
}
