package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/otgate/otgate/image"
	"github.com/otgate/otgate/qemu"
	"github.com/otgate/otgate/qemu/lab"
	"github.com/otgate/otgate/services/proxy/auth/qrterm"
	"github.com/otgate/otgate/services/proxy/auth/totp"
)

// The demo (`make run`): the demo image (image.WithDemo) with the plant
// simulator on the PLC's address in the lab's plant namespace, the gate's
// OT downlink on the lab bridge, and its uplink on QEMU user networking
// with 127.0.0.1:<port> on this host forwarded to the proxy's :8443.
// Everything starts factory-fresh on every run (new TPM, empty /perm): the
// demo image is rebuilt with new credentials each time, and a gate whose
// measured image changed would rightly refuse to unseal (quarantine).

// demoTools are the host binaries the demo uses.
type demoTools struct{ otgate, plant string }

// buildDemoTools builds the client CLI and the plant simulator into dir
// (run from the source tree).
func buildDemoTools(ctx context.Context, dir string) (demoTools, error) {
	t := demoTools{otgate: filepath.Join(dir, "otgate"), plant: filepath.Join(dir, "otgate-plant")}
	for bin, pkg := range map[string]string{t.otgate: "./cmd/otgate", t.plant: "./plant/cmd/otgate-plant"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
		if out, err := cmd.CombinedOutput(); err != nil {
			return t, fmt.Errorf("go build %s (run from the source tree): %w\n%s", pkg, err, out)
		}
	}
	return t, nil
}

// startPlant runs the tank simulator on lab.PlantCIDR's address, port 502,
// in the plant namespace, and waits until it listens.
func startPlant(ctx context.Context, l *lab.Lab, bin string) (*exec.Cmd, error) {
	addr := lab.PlantIP().String() + ":502"
	cmd := l.Plant.CommandContext(ctx, bin, "-listen", addr)
	out, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("plant simulator: %w", err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
	}()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				cmd.Wait()
				return nil, fmt.Errorf("plant simulator exited at start")
			}
			if strings.Contains(line, "listening on "+addr) {
				return cmd, nil
			}
		case <-deadline:
			cmd.Process.Kill()
			cmd.Wait()
			return nil, fmt.Errorf("plant simulator did not listen on %s within 20 s", addr)
		}
	}
}

// demoReady is the console line after which the demo user can log in.
var demoReady = regexp.MustCompile(`^demo-setup: user ` + image.DemoUser + ` (added|exists already)`)

// gateKeyLine is the proxy's console line naming the gate's key.
var gateKeyLine = regexp.MustCompile(`^proxy: otgate-proxy: listening on .*gate key SHA-256 ([0-9a-f]{64})`)

// announceDemo waits for the demo user's enrolment and prints how to use
// the demo to w.
func announceDemo(vm *qemu.VM, w io.Writer, cr *image.DemoCredentials, tools demoTools, port int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := vm.WaitFor(ctx, demoReady); err != nil {
		fmt.Fprintf(w, "\notgate-run: the demo user was not enrolled (%v); see the console above\n", err)
		return
	}
	// The gate's key as its console shows it: the login command pins it,
	// so the first login sends the credentials only to this gate.
	pin := "<the gate key SHA-256 of the proxy's console line>"
	if line, err := vm.WaitFor(ctx, gateKeyLine); err == nil {
		pin = gateKeyLine.FindStringSubmatch(line)[1]
	}
	key := totp.Key{Issuer: "otgate demo", Account: cr.User, Params: totp.DefaultParams}
	qr := ""
	if secret, err := totp.DecodeSecret(cr.Secret); err == nil {
		key.Secret = secret
		if uri, err := key.URI(); err == nil {
			if q, err := qrterm.Render(uri, false); err == nil {
				qr = q + "\n" + uri + "\n"
			}
		}
	}
	// The client by its absolute path (buildDemoTools got an absolute
	// directory): the commands are for another terminal, which need not
	// start in this one's directory.
	og := tools.otgate
	fmt.Fprintf(w, `
================================================================================
 otgate demo: the gate is up. From this host (another terminal):

 1. Log in as %[1]s (password + TOTP code); --pin is the gate's key as its
    console shows it ("gate key SHA-256"): nothing is sent to another key:
      %[2]s login --user %[1]s --pin %[8]s https://127.0.0.1:%[3]d
      password:   %[4]s
      TOTP code:  oathtool --totp -b %[5]s
                  (or scan the QR code below with an authenticator app)

 2. Open the tunnel to the tank PLC (leave it running):
      %[2]s connect plc-tank --listen 127.0.0.1:5020

 3. In a third terminal, a standard Modbus client through the gate:
    read holding registers 0-9 (valve %%, high/low setpoint, alarm level, recipe):
      mbpoll -m tcp -p 5020 -a 1 -r 1 -c 10 -t 4 -1 127.0.0.1
    allowed write (recipe register 50 = 1234), then read it back:
      mbpoll -m tcp -p 5020 -a 1 -r 51 -t 4 -1 127.0.0.1 1234
      mbpoll -m tcp -p 5020 -a 1 -r 51 -c 1 -t 4 -1 127.0.0.1
    DENIED write (open the valve, register 0): the demo grant lets engineers
    write registers 50-55 only, so the gate answers Modbus exception 02 with
    the same transaction id and the PLC never sees it:
      mbpoll -m tcp -p 5020 -a 1 -r 1 -t 4 -1 127.0.0.1 100
      -> mbpoll: "Write output (holding) register failed: Illegal data address"

 4. What you may reach, and logging out:
      %[2]s assets
      %[2]s logout

 Every request above is in the gate's tamper-evident session log (/perm/audit;
 with a DEBUG=1 image: otgate audit show /perm/audit on the console).
 Stop: Ctrl-C here (ACPI power-down). DEMO ONLY: these credentials were
 generated by the image builder (%[6]s).
================================================================================
%[7]s
`, cr.User, og, port, cr.Password, cr.Secret, image.DemoCredentialsFile, qr, pin)
}
