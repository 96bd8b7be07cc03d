package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otgate/otgate/services/netconf"
	"github.com/otgate/otgate/services/netconf/internal/lab"
	"github.com/otgate/otgate/site"
)

// TestBinary runs otgate-netconf in a gate namespace whose uplink waits
// for a DHCP server and whose downlink holds a declared PLC: the service
// becomes ready without a lease ("waiting for lease"), configures the
// downlink, finds the PLC and reports a missing one absent, takes a lease
// when the server appears, and on SIGTERM releases it (seen in the
// server's lease file and log) while the downlink keeps its address.
// The lease names a DNS server in the PLC's zone: otgate netconf status
// (the CLI, against this service's socket) says it is not used.
func TestBinary(t *testing.T) {
	lab.NeedRoot(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "otgate-netconf")
	// Without cgo, as the image builds it: the service limits its
	// capabilities on every thread, which a cgo binary cannot do.
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	src := []byte(`site: bin
zones:
  - {name: cell-1, owner: ot, mode: enforce, interface: eth1, subnet: 10.77.0.0/24, gate_address: 10.77.0.1}
assets:
  - {name: plc-1, zone: cell-1, address: 10.77.0.10, mac: "02:00:00:00:00:10", services: [{protocol: modbus}]}
  - {name: plc-2, zone: cell-1, address: 10.77.0.11, services: [{protocol: modbus}]}
`)
	s, err := site.Parse("site.yaml", src, site.Options{})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := site.Compile(s, "site.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	if err := site.Store(filepath.Join(dir, "policy"), doc); err != nil {
		t.Fatal(err)
	}

	gate, srvNS, plc := lab.NewNS(t, "gate"), lab.NewNS(t, "dhcpsrv"), lab.NewNS(t, "plc")
	lab.Veth(t, gate, "up0", srvNS, "srv0")
	lab.Run(t, "ip", "-n", srvNS.Name, "addr", "add", "10.99.0.1/24", "dev", "srv0")
	lab.Run(t, "ip", "-n", srvNS.Name, "link", "set", "srv0", "up")
	lab.Veth(t, gate, "eth1", plc, "d0")
	lab.Run(t, "ip", "-n", plc.Name, "link", "set", "d0", "address", "02:00:00:00:00:10")
	lab.Run(t, "ip", "-n", plc.Name, "addr", "add", "10.77.0.10/24", "dev", "d0")
	lab.Run(t, "ip", "-n", plc.Name, "link", "set", "d0", "up")

	sock := filepath.Join(dir, "netconf.sock")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", gate.Name, bin,
		"-uplink", "up0", "-downlink", "eth1", // the gate address: the policy's gate_address
		"-policy", filepath.Join(dir, "policy", site.AppliedFile), "-socket", sock,
		"-resolv", filepath.Join(dir, "resolv.conf"), "-etc-resolv", "", "-dhcp-hint", filepath.Join(dir, "hint.cbor"),
		"-absent-after", "2s", "-probe-interval", "500ms", "-ready-wait", "1s",
		"-dhcp-backoff-min", "1s", "-dhcp-backoff-max", "2s", "-dhcp-retry-min", "1s")
	cmd.ExtraFiles = []*os.File{pw}
	cmd.Env = append(os.Environ(), "OTGATE_NOTIFY_FD=3")
	var logs strings.Builder
	cmd.Stderr = &logs
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("otgate-netconf log:\n%s", logs.String())
		}
	})

	readyc := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(pr).ReadString('\n')
		readyc <- line
	}()
	select {
	case line := <-readyc:
		if line != "READY=1\n" {
			t.Fatalf("notify pipe said %q, want READY=1", line)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no readiness within 20s")
	}
	t.Logf("ready after %s without a DHCP server", time.Since(start).Round(time.Millisecond))

	query := func(req netconf.Request) *netconf.Response {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := netconf.Query(ctx, sock, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	st := query(netconf.Request{Op: netconf.OpStatus}).Status
	if !st.Ready || st.Uplink.State != "waiting for lease" {
		t.Errorf("uplink %+v ready %v, want ready and waiting for lease", st.Uplink, st.Ready)
	}
	if len(st.Links) != 1 || st.Links[0].Name != "eth1" || strings.Join(st.Links[0].Addresses, ",") != "10.77.0.1/24" {
		t.Errorf("downlinks %+v", st.Links)
	}
	if out := lab.Run(t, "ip", "-n", gate.Name, "-4", "addr", "show", "dev", "eth1"); !strings.Contains(out, "inet 10.77.0.1/24") || !strings.Contains(out, "eth1:nc") {
		t.Errorf("eth1 in the kernel:\n%s", out)
	}

	asset := func(name string) netconf.AssetView {
		resp := query(netconf.Request{Op: netconf.OpAsset, Asset: name})
		return *resp.Asset
	}
	lab.WaitFor(t, 15*time.Second, "plc-1 present and plc-2 absent", func() bool {
		return asset("plc-1").State == netconf.AssetPresent && asset("plc-2").State == netconf.AssetAbsent
	})
	if a := asset("plc-1"); a.Suspect || a.SeenMAC != "02:00:00:00:00:10" {
		t.Errorf("plc-1: %+v", a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if _, err := netconf.Query(ctx, sock, netconf.Request{Op: netconf.OpAsset, Asset: "plc-9"}); err == nil || !strings.Contains(err.Error(), `unknown asset "plc-9"`) {
		t.Errorf("unknown asset: %v", err)
	}
	cancel()

	srv := lab.StartDnsmasq(t, srvNS, "srv0", dir, "--dhcp-option=option:dns-server,10.77.0.53,10.99.0.53")
	lab.WaitFor(t, 30*time.Second, "a lease", func() bool {
		return query(netconf.Request{Op: netconf.OpStatus}).Status.Uplink.State == "bound"
	})
	st = query(netconf.Request{Op: netconf.OpStatus}).Status
	t.Logf("uplink: %+v", st.Uplink)
	checkStatusText(t, dir, sock)
	mac := lab.Run(t, "ip", "netns", "exec", gate.Name, "cat", "/sys/class/net/up0/address")
	mac = strings.TrimSpace(mac)
	lab.WaitFor(t, 5*time.Second, "the lease in dnsmasq's lease file", func() bool { return strings.Contains(srv.LeaseText(), mac) })

	var kinds []string
	for _, e := range query(netconf.Request{Op: netconf.OpEvents}).Events {
		kinds = append(kinds, string(e.Kind)+" "+e.Asset)
	}
	for _, want := range []string{"present plc-1", "absent plc-2", "lease "} {
		if !strings.Contains(strings.Join(kinds, "\n"), want) {
			t.Errorf("events %q lack %q", kinds, want)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit within 20s of SIGTERM")
	}
	lab.WaitFor(t, 10*time.Second, "dnsmasq to see the release", func() bool {
		return strings.Contains(srv.LogText(), "DHCPRELEASE(srv0)") && !strings.Contains(srv.LeaseText(), mac)
	})
	if out := lab.Run(t, "ip", "-n", gate.Name, "-4", "addr", "show", "dev", "up0"); strings.Contains(out, "inet ") {
		t.Errorf("up0 keeps an address after release:\n%s", out)
	}
	if out := lab.Run(t, "ip", "-n", gate.Name, "-4", "addr", "show", "dev", "eth1"); !strings.Contains(out, "inet 10.77.0.1/24") {
		t.Errorf("eth1 lost its address on stop:\n%s", out)
	}
}

// checkStatusText runs otgate netconf status (words, not -json) against
// the service at sock, whose lease names DNS servers 10.77.0.53 (in zone
// cell-1) and 10.99.0.53: the status says the first is not used, and why.
func checkStatusText(t *testing.T, dir, sock string) {
	t.Helper()
	cli := filepath.Join(dir, "otgate")
	if out, err := exec.Command("go", "build", "-o", cli, "github.com/otgate/otgate/cmd/otgate").CombinedOutput(); err != nil {
		t.Fatalf("build otgate: %v\n%s", err, out)
	}
	out, err := exec.Command(cli, "netconf", "-socket", sock, "status").CombinedOutput()
	if err != nil {
		t.Fatalf("otgate netconf status: %v\n%s", err, out)
	}
	const want = `  not used: DNS server 10.77.0.53 of the lease is in zone "cell-1" subnet 10.77.0.0/24 (the gate resolves names on the uplink side only)` + "\n"
	if !strings.Contains(string(out), want) || strings.Contains(string(out), "10.99.0.53") {
		t.Errorf("otgate netconf status, want the line %q and no other naming a DNS server:\n%s", want, out)
	}
}
