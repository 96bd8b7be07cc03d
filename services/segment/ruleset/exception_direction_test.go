package ruleset_test

import (
	"net"
	"testing"
	"time"

	"github.com/otgate/otgate/services/segment/internal/nslab"
	"github.com/otgate/otgate/services/segment/ruleset"
)

// An exception opens its flow in the direction written and the replies of
// that flow, nothing else: a connection the other way (from the exception's
// destination, out of the exception's port, to its source) is not a reply
// of it. Here plc-1 connected to rtu-1 from port 502 while rtu-1's zone
// monitored (would_block admitted it); once the zone enforces, the
// exception rtu-1 -> plc-1 tcp 502 must not carry that connection on (its
// packets are the flow key of the exception read backwards, but in the
// original direction).
func TestExceptionRepliesOnlyOfItsDirection(t *testing.T) {
	l := nslab.New(t)
	l.SetForwarding(t, true)
	echoServer(t, l.Plant2, nslab.Asset3+":"+echoPort)
	exc := ruleset.Exception{ID: "rtu-to-plc", From: nslab.Asset3, To: nslab.Asset1, Protocol: "tcp", Port: 502,
		Owner: "ops", Expires: time.Now().Add(time.Hour)}
	spec := threeAssets(ruleset.ModeMonitor)
	spec.Exceptions = []ruleset.Exception{exc}
	conn := gateConn(t, l)
	if _, err := ruleset.Apply(conn, spec, time.Now()); err != nil {
		t.Fatal(err)
	}
	var c net.Conn
	err := l.Plant.Do(func() (err error) {
		d := net.Dialer{Timeout: mustPass, LocalAddr: &net.TCPAddr{IP: net.ParseIP(nslab.Asset1), Port: 502}}
		c, err = d.Dial("tcp4", nslab.Asset3+":"+echoPort)
		return err
	})
	if err != nil {
		t.Fatalf("control: plc-1:502 to rtu-1 (monitor zone): %v", err)
	}
	defer c.Close()
	if err := exchange(c, 16, mustPass); err != nil {
		t.Fatalf("control: exchange while rtu-1's zone monitors: %v", err)
	}

	spec = threeAssets(ruleset.ModeEnforce)
	spec.Exceptions = []ruleset.Exception{exc}
	if _, err := ruleset.Apply(conn, spec, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := exchange(c, 16, mustFail); err == nil {
		t.Errorf("plc-1:502 -> rtu-1 still carried once rtu-1's zone enforces: the exception %s -> %s tcp 502 passed it the other way", exc.From, exc.To)
	}
}
