package ruleset_test

import (
	"bufio"
	"bytes"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/services/segment/internal/nslab"
	"github.com/otgate/otgate/services/segment/ruleset"
)

// An exception forwards exactly its flow, counts it, and stops at expiry by
// the kernel's own timer (no re-apply needed); a later apply of the same
// spec never brings it back.
func TestExceptionAllowsItsFlowUntilExpiry(t *testing.T) {
	l := nslab.New(t)
	l.SetForwarding(t, true) // the segment service would: the spec routes
	listenAll(t, l)
	spec := threeAssets(ruleset.ModeEnforce)
	expires := time.Now().Add(4 * time.Second)
	spec.Exceptions = []ruleset.Exception{{ID: "hist-pull", From: nslab.Asset1, To: nslab.Asset3, Protocol: "tcp", Port: 502,
		Owner: "ops@plant", Expires: expires}}
	conn := gateConn(t, l)
	if _, err := ruleset.Apply(conn, spec, time.Now()); err != nil {
		t.Fatal(err)
	}
	check(t, []probe{
		{"exception flow", l.Plant, root, nslab.Asset3 + ":502", true},
		{"reverse of the exception", l.Plant2, root, nslab.Asset1 + ":502", false},
	})
	cs, err := ruleset.ReadExceptions(conn)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].ID != "hist-pull" || cs[0].Packets == 0 {
		t.Fatalf("exception counters = %+v, want hist-pull with packets > 0", cs)
	}
	if cs[0].Flow.String() != "10.20.0.10 -> 10.30.0.10 tcp/502" {
		t.Errorf("exception flow = %s", cs[0].Flow)
	}

	time.Sleep(time.Until(expires) + 200*time.Millisecond) // wait for expiry, not an assertion
	check(t, []probe{{"exception flow after expiry (kernel timeout)", l.Plant, root, nslab.Asset3 + ":502", false}})

	if _, err := ruleset.Apply(conn, spec, time.Now()); err != nil {
		t.Fatal(err)
	}
	check(t, []probe{{"exception flow after re-apply", l.Plant, root, nslab.Asset3 + ":502", false}})
	if list := nft(t, l, "list", "set", "inet", "otgate", "exceptions"); strings.Contains(list, "10.30.0.10") {
		t.Errorf("expired exception reappeared:\n%s", list)
	}
}

// Monitor mode passes what enforce mode drops toward and out of the zone,
// and the kernel records it: flow, count, first and last seen.
func TestMonitorModePassesAndReports(t *testing.T) {
	l := nslab.New(t)
	l.SetForwarding(t, true) // the segment service would: the spec routes
	listenAll(t, l)
	conn := gateConn(t, l)
	start := time.Now()
	if _, err := ruleset.Apply(conn, threeAssets(ruleset.ModeMonitor), start); err != nil {
		t.Fatal(err)
	}
	logged := captureNFLOG(t, l)
	check(t, []probe{
		{"client to monitored asset", l.Client, root, nslab.Asset3 + ":502", true},
		{"monitored asset to enforced asset", l.Plant2, root, nslab.Asset1 + ":502", false},
		{"client to enforced asset", l.Client, root, nslab.Asset1 + ":502", false},
		{"another uid to monitored asset", l.Gate, otherUID, nslab.Asset3 + ":502", true},
	})
	time.Sleep(50 * time.Millisecond) // separate first and last seen
	check(t, []probe{{"client to monitored asset again", l.Client, root, nslab.Asset3 + ":502", true}})

	rep, err := ruleset.ReadWouldBlock(conn, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	byFlow := map[string]ruleset.WouldBlock{}
	for _, r := range rep {
		byFlow[r.Flow.String()] = r
	}
	c, ok := byFlow["10.10.0.2 -> 10.30.0.10 tcp/502"]
	if !ok {
		t.Fatalf("report lacks client -> rtu-1: %+v", rep)
	}
	// Two connections, each at least SYN + ACK (+ FIN...) in the original direction.
	if c.Packets < 4 || c.Bytes == 0 {
		t.Errorf("client flow counted %d packets %d bytes, want >= 4 packets", c.Packets, c.Bytes)
	}
	if !c.FirstSeen.Before(c.LastSeen) || c.FirstSeen.Before(start.Add(-time.Second)) || c.LastSeen.After(time.Now().Add(time.Second)) {
		t.Errorf("client flow first %s last %s, want start <= first < last <= now", c.FirstSeen, c.LastSeen)
	}
	if _, ok := byFlow["10.30.0.1 -> 10.30.0.10 tcp/502"]; !ok {
		t.Errorf("report lacks the gate's non-proxy socket to rtu-1: %+v", rep)
	}
	for f := range byFlow {
		if strings.Contains(f, "10.20.0.10 tcp") || strings.HasPrefix(f, "10.30.0.10 -> 10.10.0.2") {
			t.Errorf("report holds %s (enforced destination or a reply direction)", f)
		}
	}
	if !strings.Contains(nft(t, l, "list", "chain", "inet", "otgate", "would_block"), `log prefix "otgate-would-block" group 0`) {
		t.Error("would_block chain has no otgate-would-block log statement")
	}
	if line := logged(); line != "" && line != "otgate-would-block\t10.30.0.10" {
		t.Errorf("NFLOG group 0 line = %q, want otgate-would-block toward 10.30.0.10", line)
	} else {
		t.Logf("NFLOG group 0: %q", line)
	}
}

// Drift: a rule deleted with the nft CLI is detected (the output chain's
// policy keeps the OT side closed meanwhile), a modified rule and changed
// set elements are detected, and one atomic re-apply repairs each: the set
// element opened a real hole, which the repair closes.
func TestDriftDetectedAndRepaired(t *testing.T) {
	l := nslab.New(t)
	listenAll(t, l)
	conn := gateConn(t, l)
	spec := threeAssets(ruleset.ModeEnforce)
	d, err := ruleset.Apply(conn, spec, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	applied, err := ruleset.ReadSnapshot(conn)
	if err != nil {
		t.Fatal(err)
	}
	now, err := ruleset.ReadSnapshot(conn)
	if err != nil {
		t.Fatal(err)
	}
	if drift := ruleset.Drift(d, now, applied); len(drift) != 0 {
		t.Fatalf("drift right after apply: %v", drift)
	}

	// Delete output/to-ot by handle: the output policy (drop) still keeps
	// every uid away from the assets.
	var handle uint64
	for _, r := range applied.Chains["output"].Rules {
		if r.Comment == "otgate:output/to-ot" {
			handle = r.Handle
		}
	}
	nft(t, l, "delete", "rule", "inet", "otgate", "output", "handle", itoa(handle))
	check(t, []probe{{"another uid after the jump to to_ot was deleted", l.Gate, otherUID, nslab.Asset1 + ":502", false}})

	now, err = ruleset.ReadSnapshot(conn)
	if err != nil {
		t.Fatal(err)
	}
	drift := ruleset.Drift(d, now, applied)
	if len(drift) != 1 || drift[0] != "chain output: rule output/to-ot is missing" {
		t.Fatalf("drift = %q, want the missing output/to-ot", drift)
	}

	// A modified rule (same comment, different expressions) is drift too.
	if err := ruleset.ApplyDesired(conn, d); err != nil {
		t.Fatal(err)
	}
	applied, _ = ruleset.ReadSnapshot(conn)
	for _, r := range applied.Chains["input"].Rules {
		if r.Comment == "otgate:input/drop" {
			nft(t, l, "replace", "rule", "inet", "otgate", "input", "handle", itoa(r.Handle), "accept", "comment", `"otgate:input/drop"`)
		}
	}
	now, _ = ruleset.ReadSnapshot(conn)
	if drift := ruleset.Drift(d, now, applied); len(drift) != 1 || drift[0] != "chain input: rule input/drop was modified" {
		t.Fatalf("drift = %q, want input/drop modified", drift)
	}
	if err := ruleset.ApplyDesired(conn, d); err != nil {
		t.Fatal(err)
	}
	now, _ = ruleset.ReadSnapshot(conn)
	if drift := ruleset.Drift(d, now, nil); len(drift) != 0 {
		t.Fatalf("drift after repair: %v", drift)
	}
	check(t, []probe{{"another uid after repair", l.Gate, otherUID, nslab.Asset1 + ":502", false}})

	// A set element changed (no rule touched) is drift too: one more
	// asset port lets the proxy reach tcp/503 of plc-1; a re-apply takes
	// it away again.
	applied, _ = ruleset.ReadSnapshot(conn)
	nft(t, l, "add", "element", "inet", "otgate", "asset_ports", "{ 10.20.0.10 . 503 }")
	check(t, []probe{{"proxy to the added element's port", l.Gate, proxy, nslab.Asset1 + ":503", true}})
	now, _ = ruleset.ReadSnapshot(conn)
	if drift := ruleset.Drift(d, now, applied); len(drift) != 1 || drift[0] != "set asset_ports: 0 elements missing, 1 unexpected" {
		t.Fatalf("drift = %q, want one unexpected asset_ports element", drift)
	}
	nft(t, l, "delete", "element", "inet", "otgate", "asset_verdicts", "{ 10.30.0.10 }")
	now, _ = ruleset.ReadSnapshot(conn)
	if drift := ruleset.Drift(d, now, applied); len(drift) != 2 || drift[1] != "set asset_verdicts: 1 elements missing, 0 unexpected" {
		t.Fatalf("drift = %q, want also one missing asset_verdicts element", drift)
	}
	if err := ruleset.ApplyDesired(conn, d); err != nil {
		t.Fatal(err)
	}
	now, _ = ruleset.ReadSnapshot(conn)
	if drift := ruleset.Drift(d, now, nil); len(drift) != 0 {
		t.Fatalf("drift after repairing the sets: %v", drift)
	}
	check(t, []probe{{"proxy to tcp/503 after repair", l.Gate, proxy, nslab.Asset1 + ":503", false}})

	// The table switched off (dormant): every rule and set unchanged, no
	// chain filters anything. That is drift, and the re-apply (a new
	// table) ends it.
	nft(t, l, "add", "table", "inet", "otgate", "{ flags dormant; }")
	check(t, []probe{{"another uid with the table dormant", l.Gate, otherUID, nslab.Asset1 + ":502", true}})
	now, _ = ruleset.ReadSnapshot(conn)
	if drift := ruleset.Drift(d, now, nil); len(drift) != 1 || !strings.Contains(drift[0], "has flags 0x1 (dormant") {
		t.Fatalf("drift = %q, want the dormant table", drift)
	}
	if err := ruleset.ApplyDesired(conn, d); err != nil {
		t.Fatal(err)
	}
	now, _ = ruleset.ReadSnapshot(conn)
	if drift := ruleset.Drift(d, now, nil); len(drift) != 0 {
		t.Fatalf("drift after repairing the dormant table: %v", drift)
	}
	check(t, []probe{{"another uid after the dormant table's repair", l.Gate, otherUID, nslab.Asset1 + ":502", false}})
}

// Drift in a verdict map: an element whose key stays but whose verdict was
// changed by hand (an enforce-zone asset sent to accept, a monitor-zone
// asset's source sent to drop) opens or closes a real path; both are found
// by their verdict, named in words, and one re-apply restores them.
func TestDriftVerdictMapElementEdited(t *testing.T) {
	l := nslab.New(t)
	l.SetForwarding(t, true) // the segment service would: the spec routes (a monitor zone)
	listenAll(t, l)
	l.Client.Listen(t, nslab.Client+":8080")
	conn := gateConn(t, l)
	// plc-1, hmi-1 in enforce zone cell-a; rtu-1 in monitor zone cell-b.
	d, err := ruleset.Apply(conn, threeAssets(ruleset.ModeMonitor), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	applied, err := ruleset.ReadSnapshot(conn)
	if err != nil {
		t.Fatal(err)
	}
	if drift := ruleset.Drift(d, applied, applied); len(drift) != 0 {
		t.Fatalf("drift right after apply: %v", drift)
	}
	if v := applied.Sets["asset_verdicts"].Verdicts; len(v) != 3 || v["0a14000a"] != "jump enforce_drop" || v["0a1e000a"] != "jump would_block" {
		t.Fatalf("asset_verdicts read back as %v, want plc-1 jump enforce_drop, rtu-1 jump would_block", v)
	}
	if v := applied.Sets["asset_src_verdicts"].Verdicts; len(v) != 1 || v["0a1e000a"] != "jump would_block" {
		t.Fatalf("asset_src_verdicts read back as %v, want only rtu-1 jump would_block", v)
	}
	check(t, []probe{
		{"control: another uid to enforced plc-1", l.Gate, otherUID, nslab.Asset1 + ":502", false},
		{"control: client to enforced plc-1", l.Client, root, nslab.Asset1 + ":502", false},
		{"control: monitored rtu-1 to the client (from-monitor-zone)", l.Plant2, root, nslab.Client + ":8080", true},
	})

	// One nft transaction each: the key stays, only the verdict changes.
	nft(t, l, "delete element inet otgate asset_verdicts { 10.20.0.10 }; add element inet otgate asset_verdicts { 10.20.0.10 : accept }")
	nft(t, l, "delete element inet otgate asset_src_verdicts { 10.30.0.10 }; add element inet otgate asset_src_verdicts { 10.30.0.10 : drop }")
	check(t, []probe{
		{"another uid to plc-1 after its verdict became accept", l.Gate, otherUID, nslab.Asset1 + ":502", true},
		{"rtu-1 to the client after its source verdict became drop", l.Plant2, root, nslab.Client + ":8080", false},
	})
	now, err := ruleset.ReadSnapshot(conn)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"map asset_src_verdicts: element 10.30.0.10 maps to drop, want jump would_block",
		"map asset_verdicts: element 10.20.0.10 maps to accept, want jump enforce_drop",
	}
	if drift := ruleset.Drift(d, now, applied); strings.Join(drift, "\n") != strings.Join(want, "\n") {
		t.Fatalf("drift = %q, want %q", drift, want)
	}
	if now.Equal(applied) {
		t.Error("Snapshot.Equal: an edited verdict compares equal")
	}

	if err := ruleset.ApplyDesired(conn, d); err != nil {
		t.Fatal(err)
	}
	now, _ = ruleset.ReadSnapshot(conn)
	if drift := ruleset.Drift(d, now, applied); len(drift) != 0 {
		t.Fatalf("drift after repair: %v", drift)
	}
	if !now.Equal(applied) {
		t.Error("Snapshot.Equal: the repaired table differs from the applied one")
	}
	check(t, []probe{
		{"another uid to plc-1 after repair", l.Gate, otherUID, nslab.Asset1 + ":502", false},
		{"client to plc-1 after repair", l.Client, root, nslab.Asset1 + ":502", false},
		{"client to monitored rtu-1 after repair", l.Client, root, nslab.Asset3 + ":502", true},
		{"rtu-1 to the client after repair", l.Plant2, root, nslab.Client + ":8080", true},
	})
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// captureNFLOG listens on NFLOG group 0 in the gate namespace with tshark
// and returns a function that waits for the first logged packet and returns
// "prefix<TAB>destination". Without tshark it returns "" (the check is then
// limited to the rule itself).
func captureNFLOG(t *testing.T, l *nslab.Lab) func() string {
	t.Helper()
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Log("tshark not installed: NFLOG delivery not checked")
		return func() string { return "" }
	}
	cmd := l.Gate.Command("tshark", "-l", "-i", "nflog:0", "-c", "1", "-a", "duration:60", "-T", "fields", "-e", "nflog.prefix", "-e", "ip.dst")
	var out bytes.Buffer
	cmd.Stdout = &out
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	started := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		ok := false
		for sc.Scan() {
			if !ok && strings.Contains(sc.Text(), "Capturing on") {
				ok = true
				started <- true
			}
		}
		if !ok {
			started <- false
		}
	}()
	select {
	case ok := <-started:
		if !ok {
			t.Fatal("tshark exited without capturing on nflog:0")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("tshark did not start capturing in 60s")
	}
	time.Sleep(500 * time.Millisecond) // "Capturing on" precedes the NFLOG bind by a moment
	return func() string {
		if err := cmd.Wait(); err != nil {
			t.Errorf("tshark: %v", err)
		}
		line := strings.TrimSpace(out.String())
		if line == "" {
			t.Error("no packet logged on NFLOG group 0")
		}
		return line
	}
}
