package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/inspect/modbus"
	"github.com/otgate/otgate/plant"
	"github.com/otgate/otgate/services/identity"
	"github.com/otgate/otgate/services/identity/api"
	"github.com/otgate/otgate/site"
)

// BenchmarkModbus runs two child processes, both this test binary
// re-executed: the plant (the Modbus server every path ends at) and the
// gate. The roles are chosen by environment variables read in init, before
// TestMain, so that benchgate_test.go's TestMain stays as it is.
const (
	// modbusGateEnv holds "TPM-SOCKET PLANT-ADDR STATE-DIR" for the gate
	// child; the audit log is STATE-DIR/audit.
	modbusGateEnv = "OTGATE_BENCH_MODBUS_GATE"
	// modbusPlantEnv makes the child serve the plant simulator.
	modbusPlantEnv = "OTGATE_BENCH_MODBUS_PLANT"
	// goRelayEnv holds the plant's address for the plain Go relay child.
	goRelayEnv = "OTGATE_BENCH_GO_RELAY"
	// modbusGateProfileEnv, when set in the benchmark's environment to a
	// path prefix, makes the gate child write a CPU profile of each of its
	// throughput windows to PREFIX-SESSIONS.pprof.
	modbusGateProfileEnv = "OTGATE_BENCH_GATE_CPUPROFILE"
)

func init() {
	if cfg := os.Getenv(modbusGateEnv); cfg != "" {
		if err := runModbusBenchGate(cfg); err != nil {
			fmt.Fprintln(os.Stderr, "modbus bench gate:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if addr := os.Getenv(goRelayEnv); addr != "" {
		if err := runGoRelay(addr); err != nil {
			fmt.Fprintln(os.Stderr, "go relay:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv(modbusPlantEnv) != "" {
		if err := runBenchPlant(); err != nil {
			fmt.Fprintln(os.Stderr, "modbus bench plant:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// runBenchPlant serves the demo plant's tank on a loopback port, prints the
// address and serves until its standard input closes.
func runBenchPlant() error {
	srv := &plant.Server{Tank: plant.NewTank(nil), Unit: 1}
	return serveChild(func(l net.Listener) { srv.Serve(l) })
}

// runGoRelay is the reference relay: plain TCP, one goroutine copying
// each way with io.Copy, nothing else. It shows what the Go runtime's
// network path costs on this machine, apart from anything the gate does.
func runGoRelay(plantAddr string) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				d, err := net.Dial("tcp", plantAddr)
				if err != nil {
					return
				}
				defer d.Close()
				go func() { io.Copy(d, c); d.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, d)
			}()
		}
	}()
	fmt.Println(l.Addr())
	io.Copy(io.Discard, os.Stdin)
	return l.Close()
}

const modbusBenchSite = `site: bench
zones:
  - name: cell
    owner: ot@lab.example
    mode: enforce
    interface: eth1
    subnet: 10.99.0.0/24
    gate_address: 10.99.0.1
assets:
  - name: plc-1
    zone: cell
    address: 10.99.0.5
    services:
      - protocol: modbus
`

// modbusBenchRules is the grant the benchmark's user holds: unit 1, read
// holding registers 0-9, write holding registers 10-19.
var modbusBenchRules = modbus.Rules{Name: "bench-plc", Units: []int{1}, Functions: []string{"read-write"},
	HoldingRegisters: modbus.TableRanges{Read: []modbus.Range{{First: 0, Last: 9}}, Write: []modbus.Range{{First: 10, Last: 19}}}}

// runModbusBenchGate is the gate child, built as the otgate-proxy service
// builds it: the device identity on a TPM (swtpm, socket given by the
// parent) served over its unix socket API, the user store and user CA
// sealed by it, the audit log with checkpoints signed by the TPM key
// (default checkpoint and flush settings), and a real Modbus grant. Only
// the asset dial differs: it goes to the plant on loopback instead of an
// OT-side address. It prints "ADDR TOTP-SECRET" and runs until its
// standard input closes; then it closes the log (final checkpoint). On
// its input, "profile PATH" starts a CPU profile and "stop" ends it.
func runModbusBenchGate(cfg string) error {
	var tpmSock, plantAddr, dir string
	if _, err := fmt.Sscan(cfg, &tpmSock, &plantAddr, &dir); err != nil {
		return fmt.Errorf("%s=%q: want \"TPM-SOCKET PLANT-ADDR STATE-DIR\": %w", modbusGateEnv, cfg, err)
	}
	id, err := identity.Open(identity.Config{StateDir: filepath.Join(dir, "identity"), Site: "bench.test",
		TPM: identity.SocketTPM(tpmSock), Create: true, Log: io.Discard})
	if err != nil {
		return fmt.Errorf("identity on %s: %w", tpmSock, err)
	}
	defer id.Close()
	idSock := filepath.Join(dir, "identity.sock")
	idSrv, err := identity.Listen(id, identity.ServerConfig{Socket: idSock, GID: -1,
		Allow: map[uint32]string{uint32(os.Geteuid()): "proxy"}})
	if err != nil {
		return err
	}
	go idSrv.Serve()
	defer idSrv.Close()
	idc, err := api.Dial(idSock)
	if err != nil {
		return err
	}
	defer idc.Close()
	dev, err := idc.TLSCertificate()
	if err != nil {
		return err
	}

	pol, err := modbusBenchRules.Compile()
	if err != nil {
		return err
	}
	_, closeAll, err := childGate{Dir: dir, Device: dev, Sealer: idc, SiteYAML: modbusBenchSite,
		AuditOpts: []audit.Option{audit.WithErrorHandler(func(err error) { fmt.Fprintln(os.Stderr, "modbus bench gate: audit log:", err) })},
		Decider: func(s *site.Site, path string) *Policy {
			return &Policy{Site: s, Source: path,
				Decider: grantTable{{rule: "bench-plc", user: "bench", asset: "plc-1", protocol: "modbus", modbus: pol}}}
		},
		AssetAddr: plantAddr}.serve()
	if err != nil {
		return err
	}
	defer closeAll()
	return serveProfileCommands(os.Stdin)
}

// serveProfileCommands answers "profile PATH" and "stop" lines until in
// ends.
func serveProfileCommands(in io.Reader) error {
	var f *os.File
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		switch {
		case cmd == "profile" && f == nil:
			var err error
			if f, err = os.Create(arg); err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			fmt.Println("profiling")
		case cmd == "stop" && f != nil:
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				return err
			}
			f = nil
			fmt.Println("stopped")
		default:
			return fmt.Errorf("unexpected command %q on standard input", sc.Text())
		}
	}
	if f != nil {
		pprof.StopCPUProfile()
		return f.Close()
	}
	return sc.Err()
}
