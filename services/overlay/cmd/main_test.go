package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otgate/otgate/services/overlay"
	"github.com/otgate/otgate/site"
)

// TestBinary runs the real otgate-overlay binary in a private network
// namespace (unshare -n): it serves its table, follows a policy edit on
// SIGHUP, and stops cleanly on SIGTERM.
func TestBinary(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare (util-linux) not installed")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "otgate-overlay")
	// Without cgo, as the image builds it (the service limits its
	// capabilities on every thread, which a cgo binary cannot do).
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	store := func(assets string) {
		src := []byte("site: bin\nzones:\n  - {name: z, owner: o, mode: enforce, interface: eth1, subnet: 10.1.0.0/24, gate_address: 10.1.0.1}\noverlay: {prefix: 198.18.0.0/16}\nassets:\n" + assets)
		s, err := site.Parse("site.yaml", src, site.Options{})
		if err != nil {
			t.Fatal(err)
		}
		doc, _ := site.Compile(s, "site.yaml", src)
		if err := site.Store(filepath.Join(dir, "policy"), doc); err != nil {
			t.Fatal(err)
		}
	}
	store("  - {name: a, zone: z, address: 10.1.0.5, services: [{protocol: ssh}]}\n")

	// The kernel may lack dummy interfaces (then veth).
	kind := "dummy"
	if err := exec.Command(unshare, "-n", "ip", "link", "add", "probe0", "type", "dummy").Run(); err != nil {
		kind = "veth"
	}
	sock := filepath.Join(dir, "overlay.sock")
	cmd := exec.Command(unshare, "-n", bin,
		"-policy", filepath.Join(dir, "policy", site.AppliedFile),
		"-state", filepath.Join(dir, "state", "alloc.cbor"),
		"-socket", sock, "-link-kind", kind, "-poll", "1h")
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	wait := func(what string, cond func(*overlay.Snapshot) bool) *overlay.Snapshot {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			s, err := overlay.FetchSnapshot(ctx, sock)
			cancel()
			if err == nil && cond(s) {
				return s
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("timed out waiting for %s; log:\n%s", what, logs.String())
		return nil
	}
	s := wait("first table", func(s *overlay.Snapshot) bool { return len(s.Entries) == 1 })
	if s.Entries[0].Addr.String() != "198.18.0.2" || s.Gate.String() != "198.18.0.1" || len(s.Warnings) != 0 || s.Error != "" {
		t.Fatalf("snapshot %+v", s)
	}

	// The addresses are on the overlay link inside the binary's namespace.
	ipOut, err := exec.Command("nsenter", fmt.Sprintf("--net=/proc/%d/ns/net", cmd.Process.Pid), "ip", "-4", "-o", "addr", "show", "dev", overlay.DefaultLink).CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter ip addr: %v\n%s", err, ipOut)
	}
	for _, a := range []string{"198.18.0.1/32", "198.18.0.2/32"} {
		if !strings.Contains(string(ipOut), a) {
			t.Errorf("%s not on %s:\n%s", a, overlay.DefaultLink, ipOut)
		}
	}

	store("  - {name: a, zone: z, address: 10.1.0.5, services: [{protocol: ssh}]}\n  - {name: b, zone: z, address: 10.1.0.6, services: [{protocol: ssh}]}\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	wait("b after SIGHUP", func(s *overlay.Snapshot) bool { return len(s.Entries) == 2 })

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit 30 s after SIGTERM")
	}
}
