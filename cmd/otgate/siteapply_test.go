//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otgate/otgate/internal/atomicfile"
	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/services/identity"
	"github.com/otgate/otgate/services/identity/bootmeasure"
	"github.com/otgate/otgate/services/identity/swtpmtest"
	"github.com/otgate/otgate/site"
)

// testGate is a gate on a development host: measured files in a temporary
// root, swtpm, the identity service on a socket, the policy directory.
type testGate struct {
	t      *testing.T
	target applyTarget
	sw     *swtpmtest.TPM
	idDir  string
	id     *identity.Identity
	srv    *identity.Server
}

var gateSecret = []byte("user store key")

func newTestGate(t *testing.T) *testGate {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the identity service seals for the next boot only for uid 0")
	}
	root := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(root, name)
		if err := os.WriteFile(p, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	svc := write("svc", "service binary")
	cfg := &bootcfg.Config{TPM: "/dev/tpmrm0", TestHooks: true, Services: []bootcfg.Service{{Name: "svc", Binary: svc, Readiness: bootcfg.ReadyExit}}}
	b, err := bootcfg.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sockDir, err := os.MkdirTemp("", "apply")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	g := &testGate{t: t, idDir: filepath.Join(root, "identity"), target: applyTarget{
		dir: filepath.Join(root, "policy"), bootConfig: write("boot.cbor", string(b)),
		initBinary: write("init", "init binary"), cmdline: write("cmdline", "console=ttyS0 "+bootmeasure.HookMeasureExtra+"=boot-x"),
		socket: filepath.Join(sockDir, "identity.sock"),
	}}
	if err := siteCommand([]string{"apply", "-if-missing", "-dir", g.target.dir, demoSite}, io.Discard); err != nil {
		t.Fatal(err)
	}
	g.sw = swtpmtest.Start(t, "")
	g.boot(true, nil)
	if err := g.id.SealSecret("proxy", "users", gateSecret); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.stop)
	return g
}

// boot extends PCR 15 with what init would measure now (the policy on
// disk) and starts the identity service.
func (g *testGate) boot(create bool, hook atomicfile.Hook) {
	t := g.t
	cfg, err := bootcfg.Load(g.target.bootConfig)
	if err != nil {
		t.Fatal(err)
	}
	cmdline, _ := os.ReadFile(g.target.cmdline)
	m, err := bootmeasure.Compute(bootmeasure.Inputs{Init: g.target.initBinary, Config: cfg, ConfigPath: g.target.bootConfig,
		Policy: filepath.Join(g.target.dir, site.AppliedFile), Extra: bootmeasure.ExtraFromCmdline(cfg, string(cmdline))})
	if err != nil {
		t.Fatal(err)
	}
	tpm, err := identity.SocketTPM(g.sw.Socket).Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := identity.ExtendBootMeasurement(tpm, m.Digest); err != nil {
		t.Fatal(err)
	}
	tpm.Close()
	g.id, err = identity.Open(identity.Config{StateDir: g.idDir, Site: "plant-1.example", TPM: identity.SocketTPM(g.sw.Socket),
		BoardPCRs: []uint{0, 7}, Create: create, Log: io.Discard, StateWriteHook: hook})
	if err != nil {
		t.Fatal(err)
	}
	g.srv, err = identity.Listen(g.id, identity.ServerConfig{Socket: g.target.socket, GID: -1, Allow: map[uint32]string{0: "admin"}})
	if err != nil {
		t.Fatal(err)
	}
	go g.srv.Serve()
}

func (g *testGate) stop() {
	if g.srv != nil {
		g.srv.Close()
		g.id.Close()
		g.srv, g.id = nil, nil
	}
}

// reboot is a power cut and a boot: a new swtpm on the same state (PCRs
// reset), PCR 15 extended with the measurement of what is on disk.
func (g *testGate) reboot(hook atomicfile.Hook) {
	g.stop()
	g.sw.Stop()
	g.sw = swtpmtest.Start(g.t, g.sw.StateDir)
	g.boot(false, hook)
}

func (g *testGate) applied() []byte {
	b, err := os.ReadFile(filepath.Join(g.target.dir, site.AppliedFile))
	if err != nil {
		g.t.Fatal(err)
	}
	return b
}

// otherSite is the demo site renamed: another valid policy.
func otherSite(t *testing.T, name string) string {
	src, err := os.ReadFile(demoSite)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(p, bytes.Replace(src, []byte("site: demo-plant"), []byte("site: "+name), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (g *testGate) healthy(what string) {
	g.t.Helper()
	if q := g.id.Quarantine(); q != nil {
		g.t.Fatalf("%s: quarantine: %s", what, q.Reason)
	}
	if got, err := g.id.UnsealSecret("proxy", "users"); err != nil || !bytes.Equal(got, gateSecret) {
		g.t.Fatalf("%s: secret %q, %v", what, got, err)
	}
}

// An authorized apply keeps the gate healthy across the reboot into the new
// policy; an offline edit of the policy quarantines it.
func TestAuthorizedApplyThenTamper(t *testing.T) {
	g := newTestGate(t)
	first := g.applied()
	var out bytes.Buffer
	if err := applySite(&out, otherSite(t, "plant-b"), g.target, false); err != nil {
		t.Fatalf("apply: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "sealed for the next boot") {
		t.Fatalf("apply output: %s", out.String())
	}
	if bytes.Equal(g.applied(), first) {
		t.Fatal("policy not applied")
	}
	g.reboot(nil)
	g.healthy("boot with the applied policy")
	if a, err := site.LoadApplied(filepath.Join(g.target.dir, site.AppliedFile)); err != nil || a.Site.Name != "plant-b" {
		t.Fatalf("policy in effect: %v %v", a, err)
	}

	// Tamper: another valid policy written without apply.
	_, doc, err := loadSiteFile(otherSite(t, "plant-evil"))
	if err != nil {
		t.Fatal(err)
	}
	if err := site.Store(g.target.dir, doc); err != nil {
		t.Fatal(err)
	}
	g.reboot(nil)
	if g.id.Quarantine() == nil {
		t.Fatal("policy changed offline: not in quarantine")
	}
	// In quarantine an apply is refused and changes nothing.
	before := g.applied()
	err = applySite(&out, otherSite(t, "plant-c"), g.target, false)
	if err == nil || !strings.Contains(err.Error(), "quarantine") || !strings.Contains(err.Error(), "nothing applied") {
		t.Fatalf("apply in quarantine: %v", err)
	}
	if !bytes.Equal(before, g.applied()) {
		t.Fatal("apply in quarantine changed the policy")
	}
	// Unreachable identity service: refused, nothing changed.
	g.stop()
	err = applySite(&out, otherSite(t, "plant-c"), g.target, false)
	if err == nil || !strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), "nothing applied") {
		t.Fatalf("apply without identity: %v", err)
	}
	if !bytes.Equal(before, g.applied()) {
		t.Fatal("apply without identity changed the policy")
	}
}

// A power cut after any step of an authorized apply (inside the write of
// the next-boot slot, inside the write of the policy) leaves a gate that
// boots healthy with whichever policy is on disk: the old one until the
// policy's rename, the new one from then on.
func TestAuthorizedApplyPowerCut(t *testing.T) {
	type cut struct {
		in   string // "seal" or "store"
		step atomicfile.Step
	}
	var cuts []cut
	for _, s := range atomicfile.Steps {
		cuts = append(cuts, cut{"seal", s}, cut{"store", s})
	}
	for _, c := range cuts {
		t.Run(fmt.Sprintf("%s-%s", c.in, c.step), func(t *testing.T) {
			g := newTestGate(t)
			old := g.applied()
			crash := func(s atomicfile.Step) error {
				if s == c.step {
					return atomicfile.ErrCrash
				}
				return nil
			}
			if c.in == "seal" {
				g.reboot(crash) // same policy: a fresh boot with the hook set
				g.healthy("boot before the apply")
			} else {
				g.target.storeHook = crash
			}
			err := applySite(io.Discard, otherSite(t, "plant-b"), g.target, false)
			// A crash inside the identity service comes back over the
			// socket as its message.
			if !errors.Is(err, atomicfile.ErrCrash) && (c.in != "seal" || err == nil || !strings.Contains(err.Error(), atomicfile.ErrCrash.Error())) {
				t.Fatalf("apply: %v, want the simulated crash", err)
			}
			newPolicy := !bytes.Equal(g.applied(), old)
			wantNew := c.in == "store" && c.step >= atomicfile.StepRename
			if newPolicy != wantNew {
				t.Fatalf("new policy on disk: %v, want %v", newPolicy, wantNew)
			}
			g.target.storeHook = nil
			g.reboot(nil)
			g.healthy(fmt.Sprintf("boot after a cut (new policy on disk: %v)", newPolicy))
			// And once more (the promoted or kept slot still works).
			g.reboot(nil)
			g.healthy("second boot after the cut")
		})
	}
}
