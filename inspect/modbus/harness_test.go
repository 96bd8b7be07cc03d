package modbus_test

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otgate/otgate/inspect/modbus"
	"github.com/otgate/otgate/plant"
	"gopkg.in/yaml.v3"
)

// testRules: the demo grant used by the integration tests.
const testRules = `
name: alice-plc7
units: [1]
functions: [read-write, diagnostics]
coils: {read: ["0-15"], write: ["0-1"]}
discrete-inputs: {read: ["0-15"]}
holding-registers: {read: ["0-99"], write: ["50-55"]}
input-registers: {read: ["0-15"]}
limits: [{registers: "52", min: 0, max: 100}]
`

func policy(t testing.TB) *modbus.Policy {
	t.Helper()
	var r modbus.Rules
	if err := yaml.Unmarshal([]byte(testRules), &r); err != nil {
		t.Fatal(err)
	}
	p, err := r.Compile()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// recorder is a Sink keeping clones of every record.
type recorder struct {
	mu   sync.Mutex
	all  []*modbus.Record // every record, in the order the sink got them
	recs []*modbus.Record // the transactions' final records (no OutcomeForwarded)
	more chan struct{}
	// hook, if set, sees each record first; its error is the sink's (and
	// the record is not kept).
	hook func(*modbus.Record) error
}

func newRecorder() *recorder { return &recorder{more: make(chan struct{}, 1000)} }

func (r *recorder) Record(rec *modbus.Record) error {
	r.mu.Lock()
	hook := r.hook
	r.mu.Unlock()
	if hook != nil {
		if err := hook(rec); err != nil {
			return err
		}
	}
	c := rec.Clone()
	r.mu.Lock()
	r.all = append(r.all, c)
	if c.Outcome != modbus.OutcomeForwarded {
		r.recs = append(r.recs, c)
	}
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
	return nil
}

// setHook sets the hook (before the session starts).
func (r *recorder) setHook(f func(*modbus.Record) error) {
	r.mu.Lock()
	r.hook = f
	r.mu.Unlock()
}

// wait returns the final records once n exist (fails after a generous
// timeout).
func (r *recorder) wait(t testing.TB, n int) []*modbus.Record {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		r.mu.Lock()
		if len(r.recs) >= n {
			out := append([]*modbus.Record(nil), r.recs...)
			r.mu.Unlock()
			return out
		}
		r.mu.Unlock()
		select {
		case <-r.more:
		case <-deadline:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("waited for %d records, have %d", n, len(r.recs))
		}
	}
}

// everything returns every record so far, forwarded ones included.
func (r *recorder) everything() []*modbus.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*modbus.Record(nil), r.all...)
}

func (r *recorder) text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, rec := range r.recs {
		b.WriteString(rec.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// startPlant serves a fresh tank on loopback and returns its address.
func startPlant(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &plant.Server{Tank: plant.NewTank(nil), Unit: 1}
	done := make(chan struct{})
	go func() { srv.Serve(l); close(done) }()
	t.Cleanup(func() { l.Close(); <-done })
	return l.Addr().String()
}

// gate is a loopback relay: each accepted connection is relayed through
// the inspector to device.
type gate struct {
	addr string
	rec  *recorder
	ends chan error
}

func startGate(t testing.TB, device string, mode modbus.Mode) *gate {
	t.Helper()
	return startGateWith(t, device, mode, gateOptions{})
}

// gateOptions: a clock for the inspector and a wrapper for the client side.
type gateOptions struct {
	now        func() time.Time
	wrap       func(net.Conn) net.Conn
	rules      *atomic.Pointer[modbus.Policy] // Config.Rules
	monitoring *atomic.Bool                   // Config.Monitoring
}

func startGateWith(t testing.TB, device string, mode modbus.Mode, opts gateOptions) *gate {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{addr: l.Addr().String(), rec: newRecorder(), ends: make(chan error, 100)}
	cfg := modbus.Config{Policy: policy(t), Rules: opts.rules, Monitoring: opts.monitoring, Mode: mode, Sink: g.rec, Now: opts.now}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if opts.wrap != nil {
				c = opts.wrap(c)
			}
			d, err := net.Dial("tcp", device)
			if err != nil {
				c.Close()
				g.ends <- err
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				g.ends <- modbus.Relay(ctx, cfg, c, d)
			}()
		}
	}()
	t.Cleanup(func() { cancel(); l.Close(); wg.Wait() })
	return g
}

// end waits for the next session end reason.
func (g *gate) end(t testing.TB) error {
	t.Helper()
	select {
	case err := <-g.ends:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("session did not end")
		return nil
	}
}

func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c
}

// frame builds an ADU.
func frame(tid uint16, unit uint8, pdu ...byte) []byte {
	n := len(pdu) + 1
	return append([]byte{byte(tid >> 8), byte(tid), 0, 0, byte(n >> 8), byte(n), unit}, pdu...)
}

// readFrame reads one response ADU.
func readFrame(t testing.TB, c net.Conn) []byte {
	t.Helper()
	h := make([]byte, 7)
	if _, err := io.ReadFull(c, h); err != nil {
		t.Fatalf("read response header: %v", err)
	}
	n := int(h[4])<<8 | int(h[5])
	b := make([]byte, 6+n)
	copy(b, h)
	if _, err := io.ReadFull(c, b[7:]); err != nil {
		t.Fatalf("read response body: %v", err)
	}
	return b
}

func tidOf(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }
