package segmentd

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/sandbox/sandboxtest"
	"github.com/otgate/otgate/services/overlay/alloc"
	"github.com/otgate/otgate/services/segment"
	"github.com/otgate/otgate/services/segment/internal/nslab"
	"github.com/otgate/otgate/services/segment/ruleset"
	"github.com/otgate/otgate/site"
)

// The confined child gets the layout from confineEnv (JSON) and prints
// its report, after confineMark, on its standard output.
const (
	confineEnv  = "OTGATE_SEGMENT_CONFINE"
	confineMark = "CONFINE-REPORT "
)

type confineLayout struct {
	Paths paths
	NetNS string // the gate's network namespace, for the ruleset
	// Denied are the probes that must be refused.
	Identity, TPM string // another service's state file, the TPM stand-in
}

type confineReport struct {
	Err    string            // confine's
	Probes map[string]string // probe -> "" (done) or its error
}

const policySite = `site: lab
zones:
  - name: cell-a
    owner: ot@plant.example
    mode: enforce
    interface: dn0
    subnet: 10.20.0.0/24
    gate_address: 10.20.0.1
assets:
  - name: plc-1
    zone: cell-a
    address: 10.20.0.10
    services:
      - protocol: modbus
`

// TestConfinement runs the service's file operations confined as Main
// confines it, in a tree laid out like the device: its whole life's
// worth (the policy and boot config loaded, the history saved, read back
// and a damaged one set aside, the stale socket replaced, show reading
// the overlay's table, the forwarding switch and reverse-path filters
// read and repaired) succeeds; another service's state, the TPM, the
// policy and the boot config cannot be written, nor the TPM opened.
func TestConfinement(t *testing.T) {
	if os.Getenv(confineEnv) != "" {
		confineChild()
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: the probes show that not even root gets past the ruleset")
	}
	nslab.Require(t)
	l := nslab.New(t)
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
	boot, err := bootcfg.Marshal(&bootcfg.Config{Uplink: nslab.Uplink, Downlinks: []string{nslab.Downlink, nslab.Downlink2}})
	if err != nil {
		t.Fatal(err)
	}
	// The overlay has allocated plc-1 an endpoint, which show reads.
	overlayState := filepath.Join(dir, "perm/overlay/alloc.cbor")
	a, err := alloc.Open(overlayState)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(alloc.Config{}, []alloc.Request{{Asset: "plc-1", Zone: "cell-a"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	fwd := mk("proc/sys/net/ipv4/ip_forward", "1") // on: the spec routes nothing, it is turned off
	mk("proc/sys/net/ipv4/conf/all/rp_filter", "0")
	mk("proc/sys/net/ipv4/conf/default/rp_filter", "0")
	mk("proc/sys/net/ipv4/conf/dn0/rp_filter", "2")
	lay := confineLayout{
		Paths: paths{
			Policy:       filepath.Join(dir, "perm/policy", site.AppliedFile),
			Boot:         mk("etc/otgate/boot.cbor", string(boot)),
			Spec:         filepath.Join(dir, "perm/policy/segment.cbor"), // unused with -policy
			State:        filepath.Join(dir, "perm/segment/would-block.cbor"),
			Socket:       mk("run/otgate/segment.sock", "stale"),
			OverlayState: overlayState,
			Forwarding:   fwd,
		},
		NetNS:    l.Gate.Path(),
		Identity: mk("perm/identity/seal", "sealed"),
		TPM:      mk("dev/tpmrm0", ""),
	}
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
	for _, p := range []string{"policy", "start", "history saved", "forwarding", "rp_filter", "socket", "show",
		"history reloaded", "damaged history set aside"} {
		if got, ok := rep.Probes[p]; !ok || got != "" {
			t.Errorf("confined: %s: %q, want it done", p, got)
		}
	}
	for _, p := range []string{"write identity state", "create in identity dir", "open tpm", "write policy",
		"create in policy dir", "write boot config", "create in overlay dir", "write overlay state", "read /etc/passwd"} {
		if got, ok := rep.Probes[p]; !ok || !strings.Contains(got, "permission denied") {
			t.Errorf("confined: %s: %q, want permission denied", p, got)
		}
	}
	if t.Failed() {
		t.Logf("report: %+v", rep)
	}
}

// childNS is the gate's namespace, held open (a finalizer would close
// the descriptor the connections use).
var childNS *os.File

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
	// The gate's namespace, opened now: the nftables sockets are no
	// files, the namespace is.
	var err error
	if childNS, err = os.Open(l.NetNS); err != nil {
		rep.Err = err.Error()
		return
	}
	if _, err := confine(l.Paths); err != nil {
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
	p := l.Paths
	var spec *ruleset.Spec
	probe("policy", func() error {
		src, err := newPolicySource(p.Policy, p.Boot)
		if err != nil {
			return err
		}
		var what string
		if spec, _, what, err = src.load(); err == nil && !strings.Contains(what, "from site.yaml") {
			err = fmt.Errorf("loaded %q", what)
		}
		return err
	})
	if spec == nil {
		return
	}
	fw := segment.SysctlForwarding{Path: p.Forwarding}
	newService := func() (*segment.Service, error) {
		conn, err := ruleset.NewConn(int(childNS.Fd()))
		if err != nil {
			return nil, err
		}
		svc := segment.New(conn, spec, segment.WithStateFile(p.State), segment.WithOverlayState(p.OverlayState),
			segment.WithForwarding(fw), segment.WithLogf(func(string, ...any) {}))
		return svc, svc.Start()
	}
	svc, err := newService()
	probe("start", func() error { return err })
	if err != nil {
		return
	}
	probe("history saved", func() error { _, err := os.ReadFile(p.State); return err })
	probe("forwarding", func() error {
		if err := svc.Degraded(); err != nil {
			return err
		}
		if on, err := fw.Get(); err != nil || on {
			return fmt.Errorf("forwarding on %v, %v; want off", on, err)
		}
		return nil
	})
	probe("rp_filter", func() error {
		if d := fw.Drift(); len(d) > 0 {
			return errors.New(strings.Join(d, "; "))
		}
		return nil
	})
	probe("socket", func() error {
		ln, err := segment.ListenSocket(p.Socket)
		if err != nil {
			return err
		}
		go svc.Serve(ln)
		return nil
	})
	probe("show", func() error {
		rsp, err := segment.Query(p.Socket, segment.OpShow)
		if err != nil {
			return err
		}
		if rsp.Note != "" || len(rsp.Show) != 1 || rsp.Show[0].Endpoint == "" {
			return fmt.Errorf("show without the overlay's endpoint: %+v", rsp)
		}
		return nil
	})
	probe("history reloaded", func() error {
		_, err := newService()
		return err
	})
	probe("damaged history set aside", func() error {
		if err := os.WriteFile(p.State, []byte("damaged"), 0o600); err != nil {
			return err
		}
		if _, err := newService(); err != nil {
			return err
		}
		_, err := os.ReadFile(p.State + ".corrupt")
		return err
	})
	probe("write identity state", sandboxtest.Write(l.Identity))
	probe("create in identity dir", sandboxtest.Create(filepath.Dir(l.Identity)))
	probe("open tpm", sandboxtest.OpenRW(l.TPM))
	probe("write policy", sandboxtest.Write(p.Policy))
	probe("create in policy dir", sandboxtest.Create(filepath.Dir(p.Policy)))
	probe("write boot config", sandboxtest.Write(p.Boot))
	probe("create in overlay dir", sandboxtest.Create(filepath.Dir(p.OverlayState)))
	probe("write overlay state", sandboxtest.Write(p.OverlayState))
	probe("read /etc/passwd", sandboxtest.Read("/etc/passwd"))
}
