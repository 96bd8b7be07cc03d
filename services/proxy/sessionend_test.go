package proxy

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/inspect/modbus"
)

// sessionEnd waits for the end record of session, whatever its reason.
func (g *gate) sessionEnd(session string) audit.SessionEnd {
	g.t.Helper()
	return g.waitRecord("end of session "+session, func(b audit.Body) bool {
		e, ok := b.(audit.SessionEnd)
		return ok && e.SessionID == session
	}).(audit.SessionEnd)
}

// TestModbusAssetClosedFirst: a Modbus device that closes its connection
// (a PLC restarting, say) ends the session, and the end record says the
// asset closed it, not the client, with the bytes each way.
func TestModbusAssetClosedFirst(t *testing.T) {
	l := newLab(t)
	devLn := l.listenPlant(t, 502)
	go func() {
		c, err := devLn.Accept()
		if err != nil {
			return
		}
		if _, err := readADU(c); err == nil {
			c.Write(unhex("00010000000501030200" + "07")) // read holding 1: 7
		}
		c.Close() // then the device goes away
	}()
	g := newGate(t, l)
	rules := modbus.Rules{Name: "alice-plc", Units: []int{1}, Functions: []string{"read-only"},
		HoldingRegisters: modbus.TableRanges{Read: []modbus.Range{{First: 0, Last: 9}}}}
	pol, err := rules.Compile()
	if err != nil {
		t.Fatal(err)
	}
	g.setGrants(grant{rule: "alice-plc", user: "alice", asset: "plc-1", protocol: "modbus", modbus: pol})
	alice := g.mustLogin("alice")
	c, r, err := tunnel(t, alice, "plc-1", "modbus")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := modbusExchange(t, c, "000100000006010300010001"); got != "00010000000501030200"+"07" {
		t.Fatalf("read holding 1 = %s", got)
	}
	// The client keeps its side open: only the device has closed.
	waitClosed(t, c, 30*time.Second)
	end := g.sessionEnd(r.Session)
	if end.Reason != EndAssetClosed {
		t.Errorf("end reason %q, want %q (the device closed, the client did not)", end.Reason, EndAssetClosed)
	}
	if end.BytesToAsset != 12 || end.BytesToClient != 11 {
		t.Errorf("end record counts %d bytes to the asset and %d to the client, want 12 and 11", end.BytesToAsset, end.BytesToClient)
	}
}

// TestShutdownDuringAdmission: a tunnel decided while the gate shuts down,
// registered after Shutdown's sweep of the live sessions and before the
// gate's context is cancelled (its start record goes through), must not
// be accepted: nothing would end it (the sweep of idle and expired
// sessions has stopped) and Shutdown would wait for its client. The
// shutdown is held in its notice streams' closing (the stream's log line)
// while the tunnel is admitted.
func TestShutdownDuringAdmission(t *testing.T) {
	l := newLab(t)
	go serveEcho(l.listenPlant(t, 7))
	hook := &atomic.Pointer[func()]{}
	inShutdown, release := make(chan struct{}), make(chan struct{})
	var held atomic.Bool
	g := newGate(t, l, func(c *Config) {
		load := c.LoadPolicy
		c.LoadPolicy = func() (*Policy, error) {
			p, err := load()
			if err != nil {
				return nil, err
			}
			p.Decider = hookDecider{p.Decider, hook}
			return p, nil
		}
		logf := c.Logf
		c.Logf = func(format string, a ...any) {
			logf(format, a...)
			if strings.HasPrefix(format, "proxy: notice stream of %s from %s closed: ") && held.CompareAndSwap(false, true) {
				close(inShutdown)
				<-release
			}
		}
	})
	g.setGrants(grant{rule: "alice-echo", user: "alice", asset: "echo-1", protocol: "tcp"},
		grant{rule: "bob-echo", user: "bob", asset: "echo-1", protocol: "tcp"})
	alice, bob := g.mustLogin("alice"), g.mustLogin("bob")
	_, _ = streamNotices(openNotices(t, bob)) // registered once its hello is read
	shut := make(chan error, 1)
	f := func() {
		go func() { shut <- g.srv.Shutdown(EndShutdown) }()
		select {
		case <-inShutdown: // past the sweep of the live sessions, context not cancelled
		case <-time.After(30 * time.Second):
			t.Error("Shutdown did not reach the notice streams")
		}
	}
	hook.Store(&f)
	c, r, err := tunnel(t, alice, "echo-1", "tcp")
	close(release)
	if hook.Load() != nil {
		t.Fatal("the hook did not run: the test proves nothing")
	}
	if err == nil {
		c.Close() // lets Shutdown finish
		t.Errorf("tunnel accepted (session %s) while the gate was shutting down", r.Session)
	} else {
		denied(t, err, EndShutdown)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not return")
	}
}
