// Package proxy holds the QEMU integration test of the identity-aware
// proxy on the appliance: the full image (init, policy, segment, overlay,
// netconf, identity, trust, proxy) in the lab network, the demo plant in
// the plant namespace, and a user on the uplink side who reaches the PLC
// only through the gate, after MFA, with every Modbus request judged and
// recorded.
package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/image"
	"github.com/otgate/otgate/integration/internal/gatetest"
	"github.com/otgate/otgate/qemu"
	"github.com/otgate/otgate/qemu/lab"
)

const plcAddr = "10.77.0.20:502"

// The story: the demo image boots with a TPM, a disk and the lab; the
// demo-setup service enrols alice through the running proxy's admin
// socket; from the lab's uplink namespace alice logs in with her password
// and a TOTP code from oathtool, and `otgate connect plc-tank` carries
// mbpoll's reads and an allowed write to the plant simulator; a write the
// grant does not allow is answered by the gate with exception 02 and the
// same transaction id and never reaches the PLC; the PLC is unreachable
// from the uplink side without the gate. Then the power is cut (QEMU
// killed) with a session open: the gate boots again on its own, out of
// quarantine, with the same overlay endpoint, refuses the code alice used
// before the cut as a replay, and says on its console that the audit log
// was recovered, and the `otgate connect` left running carries new
// connections again. After a clean power-off the session log on the gate's
// disk verifies against the gate's TLS certificate, and its transcript
// holds everything boot 1 acknowledged (the denied write, the open
// session's read) and the recovery. A third boot after the policy on the
// disk was changed offline is in quarantine, and the proxy stays down
// (fail closed).
func TestProxyOnTheAppliance(t *testing.T) {
	for _, bin := range []string{"mbpoll", "oathtool", "debugfs", "nsenter", "ip", "dnsmasq"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (make test installs it)", bin)
		}
	}
	b, img := gatetest.Variant(t, "qemu-x86_64", "demo", image.WithDemo(true))
	creds, err := image.ReadDemoCredentials(img)
	if err != nil {
		t.Fatal(err)
	}
	bins := buildTools(t, gatetest.RepoRoot(t))
	state := t.TempDir()
	disk := filepath.Join(state, "perm.raw")

	l, err := lab.New(gatetest.Context(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	// dnsmasq runs as long as the context it starts with: for all three
	// boots (the lab's Close stops it). A minute's context stopped it
	// before a later boot asked for its lease.
	if _, err := l.StartDHCP(context.Background()); err != nil {
		t.Fatal(err)
	}
	startPlant(t, l, bins.plant)

	// Every boot of the gate: the same disk, TPM and lab.
	boot := func(limit time.Duration) *qemu.VM {
		return qemu.StartT(t, b, img, qemu.WithLab(l), qemu.WithDisk(disk, 256<<20), qemu.WithTPM(filepath.Join(state, "tpm")), qemu.WithTimeout(limit))
	}
	vm := boot(6 * time.Minute)
	start := time.Now()
	gatetest.MustSee(t, vm, regexp.MustCompile(`^init: proxy: /perm/proxy, /perm/audit, /run/otgate/proxy owned by 101:101 \(0700\); /perm/policy readable by group 101 \(1 files\); /perm/overlay readable by group 101 \(\d+ files\)$`))
	listening := gatetest.MustSee(t, vm, regexp.MustCompile(`^proxy: otgate-proxy: listening on \S+:8443 \(site \S+, identity spiffe://\S+/gate/[0-9a-f]+, gate key SHA-256 [0-9a-f]{64}; started in [0-9.]+s: identity [0-9.]+s, audit log [0-9.]+s, user store [0-9.]+s, user CA [0-9.]+s, policy [0-9.]+s\)$`))
	t.Logf("%s after %s", listening, time.Since(start).Round(time.Second))
	// The gate's key as its console shows it: what a user checks before
	// the first login sends credentials (otgate login --pin).
	pin := regexp.MustCompile(`gate key SHA-256 ([0-9a-f]{64})`).FindStringSubmatch(listening)[1]
	t.Logf("boot: %s", gatetest.MustSee(t, vm, "init: ready ("))
	gatetest.MustSee(t, vm, regexp.MustCompile(`^demo-setup: user alice added \(roles: engineer\); enrolment pending until the first login \(through the proxy at /run/otgate/proxy/admin.sock\)`))
	gatetest.MustSee(t, vm, regexp.MustCompile(`^netconf: .*(uplink eth0 configured: |lease on eth0 ip )`+regexp.QuoteMeta(lab.GateUplinkIP)+`/24`))
	t.Logf("gate up, alice enrolled, after %s", time.Since(start).Round(time.Second))

	gate := "https://" + net.JoinHostPort(lab.GateUplinkIP, "8443")
	profile := filepath.Join(state, "alice")

	// A wrong TOTP code is refused; the right one (computed by oathtool
	// from the secret the builder generated) logs alice in.
	if out, err := login(t, l, bins.otgate, gate, pin, profile, creds.Password, "000000"); err == nil || !strings.Contains(out, "wrong user name, password or code") {
		t.Fatalf("login with a wrong code: %v, want the gate's refusal:\n%s", err, out)
	}
	code := oathtool(t, creds.Secret)
	if out, err := login(t, l, bins.otgate, gate, pin, profile, creds.Password, code); err != nil ||
		!strings.Contains(out, "logged in as alice") || !strings.Contains(out, "pinned "+net.JoinHostPort(lab.GateUplinkIP, "8443")+"'s key SHA-256 "+pin) {
		t.Fatalf("otgate login: %v\n%s\n%s", err, out, vm.Tail(30))
	}
	t.Logf("logged in after %s", time.Since(start).Round(time.Second))

	// otgate connect in the uplink namespace.
	connect := l.Uplink.Command(bins.otgate, "connect", "plc-tank", "--listen", "127.0.0.1:5020", "--profile", profile)
	lines := startLines(t, connect)
	waitLine(t, lines, regexp.MustCompile(`listening on 127\.0\.0\.1:5020 for plc-tank/modbus`))

	// mbpoll reads holding registers 0-9: valve 20, setpoints 800/200,
	// alarm level 950 (the simulator's start values).
	out := mbpoll(t, l, "-r", "1", "-c", "10")
	for _, want := range []string{`\[1\]:\s+20\n`, `\[2\]:\s+800\n`, `\[3\]:\s+200\n`, `\[4\]:\s+950\n`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("mbpoll read through the gate lacks %s:\n%s", want, out)
		}
	}
	sess := waitLine(t, lines, regexp.MustCompile(`session ([0-9a-f]+) allowed by rule engineer-demo`))
	t.Logf("read through the gate: %s", sess[0])

	// An allowed write (recipe register 50), read back.
	if out := mbpoll(t, l, "-r", "51", "127.0.0.1", "1234"); !strings.Contains(out, "Written 1 references") {
		t.Fatalf("allowed write: %s", out)
	}
	if out := mbpoll(t, l, "-r", "51", "-c", "1"); !regexp.MustCompile(`\[51\]:\s+1234\n`).MatchString(out) {
		t.Fatalf("read back of register 50: %s", out)
	}

	// A denied write (the valve, register 0): exception 02 from the gate
	// with the same transaction id; the valve stays at 20.
	if got := rawModbus(t, l, "5020", "4242000000060106000000"+"64"); got != "42420000000301"+"8602" {
		t.Fatalf("denied write answered %s, want 424200000003018602 (tid 4242, exception 02)", got)
	}
	dout, err := l.Uplink.Command("mbpoll", "-m", "tcp", "-p", "5020", "-a", "1", "-t", "4", "-1", "-o", "10", "-r", "1", "127.0.0.1", "100").CombinedOutput()
	if err == nil || !strings.Contains(string(dout), "Write output (holding) register failed: Illegal data address") {
		t.Fatalf("mbpoll's denied write: %v\n%s", err, dout)
	}
	if got := rawModbus(t, l, "5020", "4243000000060103000000"+"01"); got != "4243000000050103020014" {
		t.Fatalf("valve after the denied write: %s, want 20 (0x0014): the write reached the PLC", got)
	}

	// Without the gate: the uplink side routes the plant prefix to the
	// gate, which neither forwards nor proxies unauthenticated.
	if out, err := l.Uplink.Command("ip", "route", "add", lab.PlantPrefix, "via", lab.GateUplinkIP).CombinedOutput(); err != nil {
		t.Fatalf("route to the plant via the gate: %v\n%s", err, out)
	}
	if err := dialFromUplink(l, plcAddr); err == nil {
		t.Fatalf("direct connection from the uplink side to %s succeeded", plcAddr)
	} else {
		t.Logf("direct %s from the uplink side: %v (as it must)", plcAddr, err)
	}

	// The gate's TLS certificate (its TPM-bound identity), for verifying
	// the checkpoints of the session log offline.
	certPEM := gateCertificate(t, l)
	connect.Process.Kill()

	// Modbus/TCP Security on plc-tank's overlay endpoint: pymodbus's TLS
	// client, with the certificate and key `otgate login` stored and the
	// gate's certificate as its trust, on a route to the overlay prefix
	// through the gate. No otgate process on the client side.
	endpoint := gatetest.Submatch(t, vm, regexp.MustCompile(`^overlay: .*plc-tank \(zone \S+\) -> (100\.64\.\d+\.\d+)$`))
	if out, err := l.Uplink.Command("ip", "route", "add", "100.64.0.0/16", "via", lab.GateUplinkIP).CombinedOutput(); err != nil {
		t.Fatalf("route to the overlay via the gate: %v\n%s", err, out)
	}
	// login stored the gate's certificate it checked by the pin.
	caFile := filepath.Join(profile, client.GateCertFile)
	if b, err := os.ReadFile(caFile); err != nil || !bytes.Equal(b, certPEM) {
		t.Fatalf("%s: %v, want the certificate the gate serves", caFile, err)
	}
	secure := func(addr, ops string) string {
		t.Helper()
		out, err := l.Uplink.Command("/usr/bin/python3", filepath.Join(gatetest.RepoRoot(t), "plant", "testdata", "modbus_client.py"),
			addr, "802", "1", ops, filepath.Join(profile, client.CertFile), filepath.Join(profile, client.KeyFile), caFile).CombinedOutput()
		if err != nil {
			t.Fatalf("pymodbus over Modbus/TCP Security to %s: %v\n%s", addr, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	got := secure(endpoint, `[["rh",0,4], ["wr",50,4321], ["rh",50,1], ["wr",0,100], ["rh",0,1]]`)
	for _, want := range []string{`{"ok": true, "values": [20, 800, 200, 950]`, `{"ok": true, "values": [4321]`, `{"exception": 2,`, `{"ok": true, "values": [20]`} {
		if !strings.Contains(got, want) {
			t.Errorf("Modbus/TCP Security at %s:802: %s lacks %s", endpoint, got, want)
		}
	}
	gatetest.MustSee(t, vm, regexp.MustCompile(`proxy: session [0-9a-f]+ of alice to plc-tank/modbus via Modbus/TCP Security at `+regexp.QuoteMeta(endpoint)+`:802 ended: client closed`))
	// The gate's own uplink address is no asset's endpoint: refused.
	if got := secure(lab.GateUplinkIP, `[["rh",0,1]]`); !strings.Contains(got, `"error"`) {
		t.Errorf("Modbus/TCP Security at the gate's uplink address was answered: %s", got)
	}
	gatetest.MustSee(t, vm, regexp.MustCompile(`that address is no asset.s overlay endpoint`))
	t.Logf("Modbus/TCP Security at %s:802 checked after %s", endpoint, time.Since(start).Round(time.Second))

	// Boot 1 ends in a power cut, not a power-off. First alice logs in
	// once more, with the code of the next TOTP step (the gate accepts one
	// step either way), so that after the cut a code the gate accepted can
	// be replayed; then a session stays open through a second `otgate
	// connect`, a read and a write done; then, a quarter of a second
	// after the device acknowledged the write (a fourth of the audit
	// log's flush interval: the write's record is durable only because
	// a request that may change the device's state makes the log flush at
	// once), QEMU is killed: the guest's page cache, its TPM's volatile
	// state and every connection are gone.
	ctx := gatetest.Context(t, 8*time.Minute) // through boot 3's power-off
	replayStep := time.Now().Unix()/30 + 1
	replayCode := oathtoolAt(t, creds.Secret, replayStep*30)
	if out, err := login(t, l, bins.otgate, gate, pin, profile, creds.Password, replayCode); err != nil || !strings.Contains(out, "logged in as alice") {
		t.Fatalf("otgate login with the next step's code: %v\n%s", err, out)
	}
	connect2 := l.Uplink.Command(bins.otgate, "connect", "plc-tank", "--listen", "127.0.0.1:5021", "--profile", profile)
	lines2 := startLines(t, connect2)
	waitLine(t, lines2, regexp.MustCompile(`listening on 127\.0\.0\.1:5021 for plc-tank/modbus`))
	live := dialModbus(t, l, "5021")
	defer live.Close()
	// Holding registers 2 and 3: the setpoint 200 and the alarm level 950.
	if got := exchangeModbus(t, live, "424400000006010300020002"); got != "42440000000701030400c803b6" {
		t.Fatalf("read on the session left open: %s, want 42440000000701030400c803b6 (200, 950)", got)
	}
	liveID := waitLine(t, lines2, regexp.MustCompile(`session ([0-9a-f]+) allowed by rule engineer-demo`))[1]
	// Holding register 50 = 777, acknowledged by the device.
	if got := exchangeModbus(t, live, "424600000006010600320309"); got != "424600000006010600320309" {
		t.Fatalf("write on the session left open: %s, want the echo 424600000006010600320309", got)
	}
	time.Sleep(250 * time.Millisecond)
	vm.Kill()
	if exit, err := vm.Wait(ctx); err != nil || exit.CleanPowerOff() || !exit.Killed {
		t.Fatalf("power cut: %v %s", err, exit)
	}
	vm.Close() // and its swtpm, before the next boot takes the TPM's state
	t.Logf("power cut after %s", time.Since(start).Round(time.Second))

	// Boot 2, on the same disk and TPM: the gate comes back on its own.
	// The audit log says it was cut (on the console and in its chain);
	// the identity unseals (no quarantine: a cut is not a changed image);
	// the user store kept the step of alice's last code, so replaying it
	// is refused as a replay; the overlay endpoint of plc-tank is the one
	// it had and still answers; a fresh code logs alice in without
	// another enrolment.
	vm2 := boot(4 * time.Minute)
	start = time.Now()
	t.Logf("boot 2: %s", gatetest.MustSee(t, vm2, regexp.MustCompile(`^init: PREVIOUS RUN DID NOT SHUT DOWN CLEANLY \(boot 1 started \S+\): a power cut, a reset or a crash \(unclean ends on this disk: 1\)$`)))
	t.Logf("boot 2: %s", gatetest.MustSee(t, vm2, regexp.MustCompile(`^proxy: otgate-proxy: audit log /perm/audit: recovered after unclean shutdown: `)))
	gatetest.MustSee(t, vm2, "init: ready (")
	gatetest.MustSee(t, vm2, regexp.MustCompile(`^netconf: .*(uplink eth0 configured: |lease on eth0 ip )`+regexp.QuoteMeta(lab.GateUplinkIP)+`/24`))
	// The `otgate connect` left running through the cut carries a new
	// connection with the credential from before it: the engineering
	// tool reconnects, nobody logs in again.
	if got := rawModbus(t, l, "5021", "424500000006010300020002"); got != "42450000000701030400c803b6" {
		t.Fatalf("read through the connect left running, after the power cut: %s, want 42450000000701030400c803b6 (200, 950)", got)
	}
	if now := time.Now().Unix() / 30; now > replayStep+1 {
		t.Fatalf("boot 2 came up at TOTP step %d, past the last step (%d) in which the gate still takes the code of step %d: the replay check needs a faster boot", now, replayStep+1, replayStep)
	}
	if out, err := login(t, l, bins.otgate, gate, pin, profile, creds.Password, replayCode); err == nil {
		t.Fatalf("a code used before the power cut logged in again after it:\n%s", out)
	}
	// The client is told only that the code did not work; the gate's
	// console (and its audit log, checked below) says why.
	gatetest.MustSee(t, vm2, regexp.MustCompile(`^proxy: proxy: auth: login of "alice" from \S+ refused: replayed-code`))
	// A code of a later step than the replayed one: the current step's,
	// once the host's clock is past the replayed step (the gate's clock,
	// set from the RTC at boot, may be a second behind the host's: one
	// step of skew covers that, not a code of the next step).
	for time.Now().Unix()/30 <= replayStep {
		time.Sleep(time.Second)
	}
	fresh := oathtool(t, creds.Secret)
	if out, err := login(t, l, bins.otgate, gate, pin, profile, creds.Password, fresh); err != nil || !strings.Contains(out, "logged in as alice") {
		t.Fatalf("otgate login after the power cut: %v\n%s\n%s", err, out, vm2.Tail(30))
	}
	if got := secure(endpoint, `[["rh",2,2]]`); !strings.Contains(got, `{"ok": true, "values": [200, 950]`) {
		t.Errorf("Modbus/TCP Security at plc-tank's endpoint %s after the power cut: %s", endpoint, got)
	}
	// The write made just before the cut reached the device (and, below,
	// the log).
	if got := secure(endpoint, `[["rh",50,1]]`); !strings.Contains(got, `{"ok": true, "values": [777]`) {
		t.Errorf("holding register 50 after the power cut: %s, want 777 (the write acknowledged before the cut)", got)
	}
	for _, line := range vm2.Lines() {
		if strings.HasPrefix(line, "overlay: plc-tank (zone") {
			t.Errorf("after the power cut plc-tank was given an endpoint again: %q (was %s)", line, endpoint)
		}
	}
	t.Logf("boot 2 (after the cut) checked after %s", time.Since(start).Round(time.Second))

	// Clean power-off: the proxy ends its sessions and checkpoints.
	if err := vm2.Powerdown(ctx); err != nil {
		t.Fatal(err)
	}
	exit, err := vm2.Wait(ctx)
	if err != nil || !exit.CleanPowerOff() {
		t.Fatalf("power-off: %v %s\n%s", err, exit, vm2.Tail(40))
	}
	t.Logf("powered off after %s", time.Since(start).Round(time.Second))

	// The session log, read from the gate's own disk.
	logs := filepath.Join(state, "extract")
	if err := os.Mkdir(logs, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("debugfs", "-R", "rdump /audit "+logs, disk).CombinedOutput(); err != nil {
		t.Fatalf("debugfs rdump /audit: %v\n%s", err, out)
	}
	auditDir := filepath.Join(logs, "audit")
	certFile := filepath.Join(state, "gate.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bins.otgate, "audit", "verify", "--cert", certFile, "--require-signed", auditDir).CombinedOutput(); err != nil {
		t.Fatalf("otgate audit verify of the gate's log: %v\n%s", err, out)
	} else {
		t.Logf("otgate audit verify: %s", strings.TrimSpace(string(out)))
	}
	show, err := exec.Command(bins.otgate, "audit", "show", auditDir).CombinedOutput()
	if err != nil {
		t.Fatalf("otgate audit show: %v\n%s", err, show)
	}
	t.Logf("otgate audit show (the gate's session log):\n%s", show)
	for _, want := range []string{`start alice -> plc-tank \(modbus\) rule "engineer-demo"`, `unit 1 read holding 0\.\.9 -> ok = 20 800 200 950 `,
		`(?m)^\d\d:\d\d:\d\d\.\d{3} alice plc-tank unit 1 write holding 50 = 1234 -> ok \(\d+\.\d ms\)$`,
		`(?m)^\d\d:\d\d:\d\d\.\d{3} alice plc-tank unit 1 write holding 0 = 100 -> denied, exception 02`, `end client closed`,
		// The Modbus/TCP Security session, recorded as a tunnel's, with
		// the endpoint it came in at.
		`start alice -> plc-tank \(modbus\) rule "engineer-demo" .* via Modbus/TCP Security at 100\.64\.\d+\.\d+:802`,
		`(?m)^\d\d:\d\d:\d\d\.\d{3} alice plc-tank unit 1 write holding 50 = 4321 -> ok \(\d+\.\d ms\)$`,
		// Anchored to the TPM's counter at open and at the clean close.
		`event log-anchored anchor \d+: log opened; anchor counter established at \d+`, `event log-closed anchor \d+: clean shutdown`,
		// The power cut: the session left open, its read and its write
		// (the write's own record, made durable at once, said the
		// request was forwarded; its answer's record, buffered, may have
		// been written in time or not), the reopen that found the log
		// unsealed, the replayed code.
		`unit 1 read holding 2\.\.3 -> ok = 200 950 `,
		`(?m)^\d\d:\d\d:\d\d\.\d{3} alice plc-tank unit 1 write holding 50 = 777 -> (ok \(\d+\.\d ms\)|forwarded, no response recorded)`,
		`event log-recovered: recovered after unclean shutdown: `,
		`-- open at this unclean shutdown, no end recorded: session ` + liveID + ` \(alice -> plc-tank/modbus, started `,
		`event login-failed user alice from \S+: replayed-code`} {
		if !regexp.MustCompile(want).Match(show) {
			t.Errorf("transcript lacks %s", want)
		}
	}
	if n := len(regexp.MustCompile(`event enrolment-confirmed user alice`).FindAll(show, -1)); n != 1 {
		t.Errorf("transcript has %d enrolment confirmations of alice, want 1 (the first login's; the login after the power cut is no new enrolment)", n)
	}

	// Boot 3: the applied policy on the gate's disk was changed offline
	// (here: the example site, whose engineers' grant has a time window).
	// The boot measurement differs from the one the data key is sealed
	// to: identity reports quarantine, the trust gate fails, and the
	// proxy is never started: nobody logs in, nothing is proxied.
	gatetest.ReplaceAppliedPolicy(t, disk, filepath.Join(gatetest.RepoRoot(t), "site", "testdata", "example-site.yaml")) // valid, not the one the gate applied
	vm3 := boot(4 * time.Minute)
	start = time.Now()
	gatetest.MustSee(t, vm3, regexp.MustCompile(`^init: previous run: clean shutdown \(boot 2 ended \S+\); unclean ends on this disk before: 1$`))
	gatetest.MustSee(t, vm3, regexp.MustCompile(`^identity: .*GATE IN QUARANTINE`))
	t.Logf("boot 3: %s", gatetest.MustSee(t, vm3, regexp.MustCompile(`^init: proxy: not started: dependency \S+ failed`)))
	gatetest.MustSee(t, vm3, regexp.MustCompile(`^netconf: .*(uplink eth0 configured: |lease on eth0 ip )`+regexp.QuoteMeta(lab.GateUplinkIP)+`/24`))
	if out, err := login(t, l, bins.otgate, gate, pin, profile, creds.Password, oathtool(t, creds.Secret)); err == nil {
		t.Fatalf("login to a gate in quarantine succeeded:\n%s", out)
	}
	for _, line := range vm3.Lines() {
		if strings.HasPrefix(line, "proxy: ") || strings.HasPrefix(line, "demo-setup: ") {
			t.Errorf("a service behind the trust gate ran in quarantine: %q", line)
		}
	}
	t.Logf("boot 3 (quarantine) checked after %s", time.Since(start).Round(time.Second))
	if err := vm3.Powerdown(ctx); err != nil {
		t.Fatal(err)
	}
	if exit, err := vm3.Wait(ctx); err != nil || !exit.CleanPowerOff() {
		t.Fatalf("boot 3 power-off: %v %s\n%s", err, exit, vm3.Tail(40))
	}
}

type tools struct{ otgate, plant string }

// buildTools builds the client CLI and the plant simulator for the host.
func buildTools(t *testing.T, root string) tools {
	t.Helper()
	dir := t.TempDir()
	out := tools{otgate: filepath.Join(dir, "otgate"), plant: filepath.Join(dir, "otgate-plant")}
	for bin, pkg := range map[string]string{out.otgate: "./cmd/otgate", out.plant: "./plant/cmd/otgate-plant"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	return out
}

// startPlant runs the tank simulator on the PLC's address in the plant
// namespace.
func startPlant(t *testing.T, l *lab.Lab, bin string) {
	t.Helper()
	cmd := l.Plant.Command(bin, "-listen", plcAddr)
	lines := startLines(t, cmd)
	waitLine(t, lines, regexp.MustCompile(`otgate-plant: unit 1 listening on 10\.77\.0\.20:502`))
}

func login(t *testing.T, l *lab.Lab, otgate, gate, pin, profile, password, code string) (string, error) {
	t.Helper()
	cmd := l.Uplink.Command(otgate, "login", "--user", "alice", "--password-stdin", "--code", code, "--pin", pin, "--profile", profile, gate)
	cmd.Stdin = strings.NewReader(password + "\n")
	out, err := cmd.CombinedOutput()
	t.Logf("otgate login %s (code %s): %v\n%s", gate, code, err, out)
	return string(out), err
}

func oathtool(t *testing.T, secret string) string {
	t.Helper()
	out, err := exec.Command("oathtool", "--totp", "-b", secret).Output()
	if err != nil {
		t.Fatalf("oathtool: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// oathtoolAt is oathtool's code for the time unix (seconds).
func oathtoolAt(t *testing.T, secret string, unix int64) string {
	t.Helper()
	out, err := exec.Command("oathtool", "--totp", "-b", "-N", fmt.Sprintf("@%d", unix), secret).Output()
	if err != nil {
		t.Fatalf("oathtool -N @%d: %v", unix, err)
	}
	return strings.TrimSpace(string(out))
}

// mbpoll runs mbpoll once against `otgate connect` in the uplink
// namespace (table 4, holding registers; 1-based references).
func mbpoll(t *testing.T, l *lab.Lab, args ...string) string {
	t.Helper()
	full := []string{"-m", "tcp", "-p", "5020", "-a", "1", "-t", "4", "-1", "-o", "10"}
	full = append(full, args...)
	if !strings.Contains(strings.Join(args, " "), "127.0.0.1") {
		full = append(full, "127.0.0.1")
	}
	out, err := l.Uplink.Command("mbpoll", full...).CombinedOutput()
	if err != nil {
		t.Fatalf("mbpoll %v: %v\n%s", full, err, out)
	}
	return string(out)
}

// rawModbus sends one ADU (hex) to 127.0.0.1:port in the uplink namespace
// on a connection of its own and returns the answer ADU in hex.
func rawModbus(t *testing.T, l *lab.Lab, port, adu string) string {
	t.Helper()
	c := dialModbus(t, l, port)
	defer c.Close()
	return exchangeModbus(t, c, adu)
}

// dialModbus connects to 127.0.0.1:port in the uplink namespace.
func dialModbus(t *testing.T, l *lab.Lab, port string) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := l.Uplink.DialContext(ctx, "tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// exchangeModbus sends one ADU (hex) on c and returns the answer ADU in
// hex.
func exchangeModbus(t *testing.T, c net.Conn, adu string) string {
	t.Helper()
	req, err := hex.DecodeString(adu)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 6)
	if _, err := io.ReadFull(c, hdr); err != nil {
		t.Fatalf("modbus answer to %s: %v", adu, err)
	}
	body := make([]byte, int(hdr[4])<<8|int(hdr[5]))
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatalf("modbus answer to %s: %v", adu, err)
	}
	return hex.EncodeToString(append(hdr, body...))
}

func dialFromUplink(l *lab.Lab, addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := l.Uplink.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	c.Close()
	return nil
}

// gateCertificate fetches the certificate the gate's TLS listener serves.
func gateCertificate(t *testing.T, l *lab.Lab) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	raw, err := l.Uplink.DialContext(ctx, "tcp", net.JoinHostPort(lab.GateUplinkIP, "8443"))
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"otgate-login/1"}}) //nolint:gosec // only to read the certificate
	defer c.Close()
	if err := c.HandshakeContext(ctx); err != nil {
		t.Fatalf("TLS to the gate: %v", err)
	}
	leaf := c.ConnectionState().PeerCertificates[0]
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})
}

// startLines starts cmd and returns its output lines (stdout and stderr).
func startLines(t *testing.T, cmd *exec.Cmd) <-chan string {
	t.Helper()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		pw.Close()
	})
	ch := make(chan string, 1024)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}

// waitLine waits up to a minute for a line matching re and returns its
// submatches; it logs what it skipped.
func waitLine(t *testing.T, lines <-chan string, re *regexp.Regexp) []string {
	t.Helper()
	var seen bytes.Buffer
	deadline := time.After(time.Minute)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("output ended without %s:\n%s", re, seen.String())
			}
			fmt.Fprintln(&seen, line)
			if m := re.FindStringSubmatch(line); m != nil {
				return m
			}
		case <-deadline:
			t.Fatalf("no line %s within a minute:\n%s", re, seen.String())
		}
	}
}
