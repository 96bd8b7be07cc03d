package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/services/proxy/wire"
)

func TestConnectNoticeLines(t *testing.T) {
	var b bytes.Buffer
	n := &connectNotices{asset: "plc-7", w: &b, mu: &sync.Mutex{}}
	r := &wire.Reply{Accept: true, Session: "12", Rule: "night-shift", Until: 100}
	n.warn(r, 59*time.Second+400*time.Millisecond)
	n.notice(r, wire.Notice{Kind: wire.NoticeDeadline, Session: "12", Rule: "night-shift", Until: 100}) // as at connect: quiet
	n.notice(r, wire.Notice{Kind: wire.NoticeDeadline, Session: "12", Rule: "late-shift", Until: 100})  // a handover
	n.notice(r, wire.Notice{Kind: wire.NoticeRules, Session: "12", Rule: "late-shift", Until: 100,
		Reason: `other Modbus rules (grant "late-shift") judge its requests from now on`})
	n.notice(r, wire.Notice{Kind: wire.NoticeEnded, Session: "12", Reason: "policy reload: no longer allowed: no grant allows it", ByGate: true, Dropped: 3})
	n.notice(r, wire.Notice{Kind: wire.NoticeEnded, Session: "13", Reason: "client closed", Dropped: 3})
	n.stream(fmt.Errorf("%w: tls: no application protocol", client.ErrNoticesUnsupported))
	want := []string{
		"otgate: plc-7: session 12 ends in 59s (rule night-shift)",
		"otgate: plc-7: session 12: grant late-shift takes it over from night-shift (its end stays)",
		`otgate: plc-7: session 12: other Modbus rules (grant "late-shift") judge its requests from now on`,
		"otgate: plc-7: session 12 ended by the gate: policy reload: no longer allowed: no grant allows it",
		"otgate: plc-7: the gate dropped 3 notices this client read too slowly",
		"otgate: plc-7: the gate sends no session notices (an older gate): warnings come from local timers and cannot follow a deadline the gate moves",
	}
	if got := strings.Split(strings.TrimSpace(b.String()), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
