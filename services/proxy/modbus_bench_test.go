package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/internal/hostidle"
)

// benchPath is one way from the benchmark's Modbus client to the plant.
type benchPath struct {
	name  string
	relay *benchProc // the process between client and plant (nil: direct)
	conns []*modbusConn
	tx    int // transactions run on the path, warm-ups included

	// one session, accumulated over the interleaved rounds
	lat1                       []time.Duration
	relayCPU1, plantCPU1, cli1 time.Duration
	others1                    float64 // CPUs other programs kept busy
	// by session count
	load                     map[int]loadResult
	relayCPU, plantCPU, cliN map[int]time.Duration
	othersN                  map[int]float64
}

// cpuWindow samples the CPU time of the processes a measurement charges,
// and of the whole machine, to tell how much other programs took.
type cpuWindow struct {
	relay, plant, self time.Duration
	ours               time.Duration // every process of the benchmark
	machine            time.Duration // every CPU of the machine, busy time
	at                 time.Time
}

func sampleCPU(b *testing.B, relay, plant *benchProc, ours []*benchProc) cpuWindow {
	w := cpuWindow{at: time.Now()}
	if relay != nil {
		w.relay = relay.cpu(b)
	}
	w.plant = plant.cpu(b)
	self, err := procCPU(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	w.self = self
	w.ours = self
	for _, p := range ours {
		w.ours += p.cpu(b)
	}
	if w.machine, err = machineBusy(); err != nil {
		b.Fatal(err)
	}
	return w
}

// othersLoad is how many CPUs other programs kept busy between w0 and w1.
func othersLoad(w0, w1 cpuWindow) float64 {
	others := (w1.machine - w0.machine) - (w1.ours - w0.ours)
	return max(float64(others)/float64(w1.at.Sub(w0.at)), 0)
}

// machineBusy is the busy time of all CPUs from /proc/stat (user, nice,
// system, irq, softirq, steal).
func machineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: first line %q is not the cpu total", line)
	}
	var busy uint64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: field %d of %q: %w", i, line, err)
		}
		busy += v
	}
	return time.Duration(busy) * time.Second / 100, nil
}

// Sizes of the run (about a minute in all, most of it the 256 tunnels'
// setup and the throughput windows).
const (
	latencyRounds  = 10   // interleaved rounds of the one-session latency run
	latencyPerPath = 1500 // transactions per path per round
	loadWarmUp     = 300 * time.Millisecond
	loadWindow     = 2 * time.Second // measured window per path and session count
)

var benchSessionCounts = []int{16, 256}

// BenchmarkModbus measures Modbus/TCP transactions (alternately a read of
// 10 holding registers and a write single register, from a raw-socket
// client) against the plant simulator's Modbus server, running in its own
// process, over three paths in one run:
//
//   - direct: client -> plant;
//   - haproxy: client -> haproxy (mode tcp, its own process) -> plant;
//   - gate: client -> TLS 1.3 mutual tunnel (client.Session.Tunnel, as
//     each connection of `otgate connect` makes) -> the gate in its own
//     process (identity on swtpm, certificate check, policy decision,
//     fsync'd session start, Modbus inspection against a real grant, one
//     decoded payload record per transaction in the hash-chained audit
//     log) -> plant;
//
// and, for latency only, gate+forwarder: client -> client.Forwarder on
// loopback (the `otgate connect` listener) -> tunnel -> gate -> plant.
//
// It prints the one-session latency (p50/p99 and added over direct,
// measured in interleaved rounds so that background load hits every path
// alike), transactions per second at 16 and 256 sessions (each its own
// connection or tunnel, one request outstanding), and CPU time per
// transaction of the relay (gate or haproxy), the plant and the client
// process. At the end the gate is stopped, its audit log verified with the
// gate's public key, and its decoded records counted against the
// transactions sent through it.
//
// The measurement is made once, whatever b.N. To profile the gate in its
// throughput windows, set OTGATE_BENCH_GATE_CPUPROFILE=/path/gate: the
// profiles are /path/gate-16.pprof and /path/gate-256.pprof (read them
// with go tool pprof and this test binary).
func BenchmarkModbus(b *testing.B) {
	if testing.Short() {
		b.Skip("-short: the Modbus path benchmark takes about a minute")
	}
	setupStart := time.Now()
	plantProc, plantAddr := startBenchPlant(b)
	haproxy, haAddr := startHAProxy(b, plantAddr)
	goRelay, goRelayAddr := startChild(b, "go relay", goRelayEnv+"="+plantAddr)
	gate := startModbusBenchGate(b, plantAddr)
	fwdAddr := gate.startForwarder(b)

	maxN := benchSessionCounts[len(benchSessionCounts)-1]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tcp := func(addr string) func(context.Context) (net.Conn, error) {
		return func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	direct := &benchPath{name: "direct"}
	viaHA := &benchPath{name: "haproxy", relay: haproxy}
	viaGo := &benchPath{name: "go-relay", relay: goRelay}
	viaGate := &benchPath{name: "gate", relay: gate.benchProc}
	viaFwd := &benchPath{name: "gate+forwarder", relay: gate.benchProc}
	paths := modbusPaths{all: []*benchPath{direct, viaHA, viaGo, viaGate, viaFwd}, direct: direct, haproxy: viaHA, gate: viaGate}
	all := paths.all
	for _, x := range []struct {
		p    *benchPath
		n    int
		dial func(context.Context) (net.Conn, error)
	}{{direct, maxN, tcp(plantAddr)}, {viaHA, maxN, tcp(haAddr)}, {viaGo, maxN, tcp(goRelayAddr)}, {viaGate, maxN, gate.tunnel}, {viaFwd, 1, tcp(fwdAddr)}} {
		conns, err := openSessions(ctx, x.n, x.dial)
		if err != nil {
			b.Fatalf("open %d sessions on path %s: %v", x.n, x.p.name, err)
		}
		x.p.conns = conns
	}
	defer func() {
		for _, p := range all {
			for _, m := range p.conns {
				m.c.Close()
			}
		}
	}()
	gatePub := viaGate.conns[0].c.(*tls.Conn).ConnectionState().PeerCertificates[0].PublicKey
	setup := time.Since(setupStart)
	ours := []*benchProc{plantProc, haproxy, goRelay, gate.benchProc, gate.tpm}
	b.ResetTimer()

	// One session: interleaved rounds, every path charged its own CPU.
	for _, p := range all {
		p.load, p.relayCPU, p.plantCPU, p.cliN = map[int]loadResult{}, map[int]time.Duration{}, map[int]time.Duration{}, map[int]time.Duration{}
		p.othersN = map[int]float64{}
		if _, err := p.conns[0].sequential(200, nil); err != nil { // warm up
			b.Fatalf("path %s: %v", p.name, err)
		}
		p.tx += 200
	}
	for range latencyRounds {
		for _, p := range all {
			c0 := sampleCPU(b, p.relay, plantProc, ours)
			var err error
			p.lat1, err = p.conns[0].sequential(latencyPerPath, p.lat1)
			c1 := sampleCPU(b, p.relay, plantProc, ours)
			if err != nil {
				b.Fatalf("path %s, one session: %v", p.name, err)
			}
			p.others1 += othersLoad(c0, c1) / latencyRounds
			p.tx += latencyPerPath
			p.relayCPU1 += c1.relay - c0.relay
			p.plantCPU1 += c1.plant - c0.plant
			p.cli1 += c1.self - c0.self
		}
	}
	for _, p := range all {
		slices.Sort(p.lat1)
	}

	// Many sessions: a closed loop over each path in turn.
	for _, n := range benchSessionCounts {
		for _, p := range all {
			if len(p.conns) < n {
				continue // gate+forwarder: latency only
			}
			conns := p.conns[:n]
			warm, err := closedLoop(conns, loadWarmUp)
			p.tx += warm.tx
			if err != nil {
				b.Fatalf("path %s, %d sessions, warm-up: %v", p.name, n, err)
			}
			profile := os.Getenv(modbusGateProfileEnv)
			if profile != "" && p == viaGate {
				gate.command(b, fmt.Sprintf("profile %s-%d.pprof", profile, n), "profiling")
			}
			c0 := sampleCPU(b, p.relay, plantProc, ours)
			res, err := closedLoop(conns, loadWindow)
			c1 := sampleCPU(b, p.relay, plantProc, ours)
			if profile != "" && p == viaGate {
				gate.command(b, "stop", "stopped")
			}
			p.othersN[n] = othersLoad(c0, c1)
			p.tx += res.tx
			if err != nil {
				b.Fatalf("path %s, %d sessions: %v", p.name, n, err)
			}
			p.load[n] = res
			p.relayCPU[n] = c1.relay - c0.relay
			p.plantCPU[n] = c1.plant - c0.plant
			p.cliN[n] = c1.self - c0.self
		}
	}
	b.StopTimer()

	// The gate's record of it all: stop it (sessions end, final
	// checkpoint), verify the log and count the decoded transactions.
	for _, p := range all {
		for _, m := range p.conns {
			m.c.Close()
		}
	}
	if err := gate.stop(30 * time.Second); err != nil {
		b.Errorf("stop the gate: %v", err)
	}
	logDir := filepath.Join(gate.dir, "audit")
	rep, err := audit.Verify(logDir, audit.Trust{PublicKey: gatePub})
	if err != nil {
		b.Fatalf("audit verify %s: %v", logDir, err)
	}
	recs, err := countDecoded(logDir)
	if err != nil {
		b.Fatal(err)
	}
	if want := viaGate.tx + viaFwd.tx; recs.ok != want || recs.other != 0 {
		b.Errorf("audit log holds %d decoded ok transactions (and %d other decoded records), want %d: one per transaction through the gate",
			recs.ok, recs.other, want)
	}
	if recs.starts != len(viaGate.conns)+len(viaFwd.conns) {
		b.Errorf("audit log holds %d session starts, want %d", recs.starts, len(viaGate.conns)+len(viaFwd.conns))
	}

	added := paths.added
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(us(added(viaGate, .5)), "gate-added-p50-us")
	b.ReportMetric(us(added(viaGate, .99)), "gate-added-p99-us")
	b.ReportMetric(us(added(viaHA, .5)), "haproxy-added-p50-us")
	b.ReportMetric(us(added(viaHA, .99)), "haproxy-added-p99-us")
	for _, n := range benchSessionCounts {
		b.ReportMetric(viaGate.load[n].perSecond(), fmt.Sprintf("gate-tx/s@%d", n))
		b.ReportMetric(perTx(viaGate.relayCPU[n], viaGate.load[n].tx), fmt.Sprintf("gate-cpu-us/tx@%d", n))
	}
	info := benchTableInfo{setup: setup, rep: rep, recs: recs, tpmCPU: gate.tpm.cpu(b), gateTx: viaGate.tx + viaFwd.tx}
	// The testing package keeps only 10 lines of a benchmark's log: the
	// summary fits, the detail goes to standard output.
	fmt.Printf("BenchmarkModbus detail:\n%s%s\n", modbusTable(paths, info), hostidle.Describe())
	b.Logf("%s", modbusSummary(paths, info))
}

// openSessions opens n connections with dial, eight at a time.
func openSessions(ctx context.Context, n int, dial func(context.Context) (net.Conn, error)) ([]*modbusConn, error) {
	conns := make([]*modbusConn, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dial(ctx)
			if err != nil {
				errs[i] = err
				return
			}
			conns[i] = newModbusConn(c)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, m := range conns {
			if m != nil {
				m.c.Close()
			}
		}
		return nil, err
	}
	return conns, nil
}

// decodedCount is what the gate's audit log says about the run.
type decodedCount struct {
	ok, other, starts, ends int
	// forwarded: records of writes made before forwarding them
	// (modbus.RecordedBeforeForwarding), one per write besides its "ok".
	forwarded int
}

// countDecoded reads the log and counts Modbus transactions recorded as
// allowed and answered, other decoded records, and session starts/ends.
func countDecoded(dir string) (decodedCount, error) {
	var c decodedCount
	r, err := audit.NewReader(dir)
	if err != nil {
		return c, err
	}
	defer r.Close()
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			return c, nil
		}
		if err != nil {
			return c, fmt.Errorf("read audit log %s: %w", dir, err)
		}
		switch v := e.Body.(type) {
		case audit.Payload:
			if v.Decoded == nil {
				continue
			}
			switch {
			case v.Decoded.Protocol == "modbus" && v.Decoded.Outcome == "ok":
				c.ok++
			case v.Decoded.Protocol == "modbus" && v.Decoded.Result == "forwarded":
				c.forwarded++
			default:
				c.other++
			}
		case audit.SessionStart:
			c.starts++
		case audit.SessionEnd:
			c.ends++
		}
	}
}

func pct(d []time.Duration, p float64) time.Duration {
	return loadResult{lat: d}.pct(p)
}

func perTx(cpu time.Duration, tx int) float64 {
	if tx == 0 {
		return 0
	}
	return us(cpu) / float64(tx)
}

type benchTableInfo struct {
	setup  time.Duration
	rep    *audit.Report
	recs   decodedCount
	tpmCPU time.Duration
	gateTx int
}

// modbusPaths are the benchmark's paths, with the ones the targets name.
type modbusPaths struct {
	all                   []*benchPath
	direct, haproxy, gate *benchPath
}

// added is the latency p added over direct at one session.
func (m modbusPaths) added(p *benchPath, q float64) time.Duration {
	return pct(p.lat1, q) - pct(m.direct.lat1, q)
}

// targets is the line comparing the figures with the targets.
func (m modbusPaths) targets() string {
	last := benchSessionCounts[len(benchSessionCounts)-1]
	g50, g99 := m.added(m.gate, .5), m.added(m.gate, .99)
	h50, h99 := m.added(m.haproxy, .5), m.added(m.haproxy, .99)
	low := min(m.gate.load[16].perSecond(), m.gate.load[last].perSecond())
	return fmt.Sprintf("targets (figures, not pass/fail): gate +p50 %.1f<=50 %s, +p99 %.1f<=250 %s, min tx/s %.0f>=20000 %s, no worse than haproxy (+%.1f/+%.1f) %s",
		us(g50), verdict(g50 <= 50*time.Microsecond), us(g99), verdict(g99 <= 250*time.Microsecond), low, verdict(low >= 20000),
		us(h50), us(h99), verdict(g50 <= h50 && g99 <= h99))
}

// modbusTable renders every figure, one table per session count.
func modbusTable(m modbusPaths, info benchTableInfo) string {
	all, direct := m.all, m.direct
	var s strings.Builder
	fmt.Fprintf(&s, "Modbus/TCP: read 10 holding registers / write single register, alternating; server: plant simulator (package plant) in its own process\n")
	fmt.Fprintf(&s, "one session (%d x %d transactions per path, interleaved rounds)\n", latencyRounds, latencyPerPath)
	fmt.Fprintf(&s, "  %-15s %9s %9s %10s %10s %12s %12s %12s %13s\n", "path", "p50 us", "p99 us", "+p50 us", "+p99 us", "relay CPU/tx", "plant CPU/tx", "client CPU/tx", "others' CPUs")
	for _, p := range all {
		n := len(p.lat1)
		fmt.Fprintf(&s, "  %-15s %9.1f %9.1f %10.1f %10.1f %12s %12s %12s %13.2f\n", p.name, us(pct(p.lat1, .5)), us(pct(p.lat1, .99)),
			us(pct(p.lat1, .5)-pct(direct.lat1, .5)), us(pct(p.lat1, .99)-pct(direct.lat1, .99)),
			cpuCell(p.relay != nil, p.relayCPU1, n), cpuCell(true, p.plantCPU1, n), cpuCell(true, p.cli1, n), p.others1)
	}
	for _, n := range benchSessionCounts {
		fmt.Fprintf(&s, "%d sessions (closed loop, one request outstanding per session, %v window)\n", n, loadWindow)
		fmt.Fprintf(&s, "  %-15s %9s %9s %10s %12s %12s %12s %13s\n", "path", "tx/s", "p50 us", "p99 us", "relay CPU/tx", "plant CPU/tx", "client CPU/tx", "others' CPUs")
		for _, p := range all {
			r, ok := p.load[n]
			if !ok {
				continue
			}
			fmt.Fprintf(&s, "  %-15s %9.0f %9.1f %10.1f %12s %12s %12s %13.2f\n", p.name, r.perSecond(), us(r.pct(.5)), us(r.pct(.99)),
				cpuCell(p.relay != nil, p.relayCPU[n], r.tx), cpuCell(true, p.plantCPU[n], r.tx), cpuCell(true, p.cliN[n], r.tx), p.othersN[n])
		}
	}
	fmt.Fprintf(&s, "%s\n", m.targets())
	fmt.Fprintf(&s, "gate audit log: %d records in %d files, %d checkpoints verified with the gate's TPM key; %d decoded ok transactions for %d sent, %d writes recorded before forwarding, %d other decoded; %d session starts, %d ends\n",
		info.rep.Records, info.rep.Files, info.rep.Checkpoints, info.recs.ok, info.gateTx, info.recs.forwarded, info.recs.other, info.recs.starts, info.recs.ends)
	fmt.Fprintf(&s, "swtpm (the gate's TPM: TLS handshakes, checkpoints) used %v CPU over the whole run; setup (processes, identity, login, %d tunnels) took %v\n",
		info.tpmCPU.Round(time.Millisecond), len(m.gate.conns), info.setup.Round(time.Millisecond))
	return s.String()
}

func cpuCell(has bool, cpu time.Duration, tx int) string {
	if !has {
		return "-"
	}
	return fmt.Sprintf("%.1f us", perTx(cpu, tx))
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// modbusSummary is every headline figure side by side, in 9 lines.
func modbusSummary(m modbusPaths, info benchTableInfo) string {
	all, direct := m.all, m.direct
	var s strings.Builder
	last := benchSessionCounts[len(benchSessionCounts)-1]
	var others float64
	var windows int
	for _, p := range all {
		others += p.others1
		windows++
		for _, o := range p.othersN {
			others += o
			windows++
		}
	}
	fmt.Fprintf(&s, "Modbus read 10 HR / write 1 HR, plant server; +pNN: added over direct, 1 session; CPU: relay us/tx; other programs used %.2f of %d CPUs\n",
		others/float64(windows), runtime.NumCPU())
	fmt.Fprintf(&s, "  %-14s %6s %6s %6s %6s | %8s %8s | %6s %6s %6s\n", "path", "p50", "p99", "+p50", "+p99",
		"tx/s@16", fmt.Sprintf("tx/s@%d", last), "CPU@1", "CPU@16", fmt.Sprintf("CPU@%d", last))
	for _, p := range all {
		fmt.Fprintf(&s, "  %-14s %6.1f %6.1f %6.1f %6.1f |", p.name, us(pct(p.lat1, .5)), us(pct(p.lat1, .99)),
			us(pct(p.lat1, .5)-pct(direct.lat1, .5)), us(pct(p.lat1, .99)-pct(direct.lat1, .99)))
		for _, n := range benchSessionCounts {
			if r, ok := p.load[n]; ok {
				fmt.Fprintf(&s, " %8.0f", r.perSecond())
			} else {
				fmt.Fprintf(&s, " %8s", "-")
			}
		}
		fmt.Fprintf(&s, " | %6s", cpuFig(p.relay != nil, p.relayCPU1, len(p.lat1)))
		for _, n := range benchSessionCounts {
			r, ok := p.load[n]
			fmt.Fprintf(&s, " %6s", cpuFig(ok && p.relay != nil, p.relayCPU[n], r.tx))
		}
		s.WriteByte('\n')
	}
	fmt.Fprintf(&s, "%s\n", m.targets())
	fmt.Fprintf(&s, "gate audit log: %d decoded ok records for %d transactions sent, %d records verified with %d TPM-signed checkpoints",
		info.recs.ok, info.gateTx, info.rep.Records, info.rep.Checkpoints)
	return s.String()
}

func cpuFig(has bool, cpu time.Duration, tx int) string {
	if !has {
		return "-"
	}
	return fmt.Sprintf("%.1f", perTx(cpu, tx))
}
