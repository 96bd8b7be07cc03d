package ruleset_test

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/otgate/otgate/services/segment/internal/nslab"
	"github.com/otgate/otgate/services/segment/ruleset"
)

// Timeouts: a connection that must succeed gets plenty of time on a loaded
// machine; one that must fail gets long enough that a working path would
// certainly have answered (a local veth answers in well under 10 ms).
const (
	mustPass = 10 * time.Second
	mustFail = 1500 * time.Millisecond
)

var (
	proxy    = nslab.Identity{UID: 990, Mark: 0x5a}
	otherUID = nslab.Identity{UID: 1000, Mark: 0x5a}
	noMark   = nslab.Identity{UID: 990}
	root     = nslab.Identity{}
)

func baseSpec() ruleset.BaselineSpec {
	return ruleset.BaselineSpec{
		Uplink:      nslab.Uplink,
		Downlinks:   []string{nslab.Downlink, nslab.Downlink2},
		ListenPorts: []uint16{8443},
		DHCPClient:  true,
		Proxy:       ruleset.ProxyIdentity{UID: 990, Mark: 0x5a},
	}
}

// threeAssets is plc-1 and hmi-1 in enforce zone cell-a on dn0, rtu-1 in
// zone cell-b (mode2) on dn1, with the enforce interfaces as sitespec lists
// them.
func threeAssets(mode2 string) *ruleset.Spec {
	enforceIfs := []string{nslab.Downlink}
	if mode2 == ruleset.ModeEnforce {
		enforceIfs = append(enforceIfs, nslab.Downlink2)
	}
	return &ruleset.Spec{
		BaselineSpec:      baseSpec(),
		EnforceInterfaces: enforceIfs,
		Assets: []ruleset.Asset{
			{Name: "plc-1", Zone: "cell-a", Mode: ruleset.ModeEnforce, Address: nslab.Asset1, TCPPorts: []uint16{502}, Endpoint: "100.64.0.1"},
			{Name: "hmi-1", Zone: "cell-a", Mode: ruleset.ModeEnforce, Address: nslab.Asset2, TCPPorts: []uint16{502, 8080}},
			{Name: "rtu-1", Zone: "cell-b", Mode: mode2, Address: nslab.Asset3, TCPPorts: []uint16{502}},
		},
	}
}

// gateConn opens an nftables connection into the lab's gate namespace.
func gateConn(t testing.TB, l *nslab.Lab) *nftables.Conn {
	t.Helper()
	f := l.Gate.Open(t)
	c, err := ruleset.NewConn(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// listenAll starts listeners on every asset port used by the tests.
func listenAll(t testing.TB, l *nslab.Lab) {
	t.Helper()
	for _, a := range []string{nslab.Asset1 + ":502", nslab.Asset1 + ":503", nslab.Asset2 + ":502"} {
		l.Plant.Listen(t, a)
	}
	l.Plant2.Listen(t, nslab.Asset3+":502")
}

type probe struct {
	what string
	from *nslab.NS
	id   nslab.Identity
	to   string
	want bool
}

// check runs the probes concurrently (a dropped SYN costs a full timeout)
// and reports every mismatch.
func check(t *testing.T, probes []probe) {
	t.Helper()
	type result struct {
		got bool
		err error
	}
	res := make([]result, len(probes))
	var wg sync.WaitGroup
	for i, p := range probes {
		timeout := mustFail
		if p.want {
			timeout = mustPass
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i].got, res[i].err = p.from.Reach(p.to, p.id, timeout)
		}()
	}
	wg.Wait()
	for i, p := range probes {
		if res[i].err != nil {
			t.Errorf("%s: %v", p.what, res[i].err)
			continue
		}
		if res[i].got != p.want {
			t.Errorf("%s (%s -> %s as uid %d mark %#x): reachable=%v, want %v", p.what, p.from.Name, p.to, p.id.UID, p.id.Mark, res[i].got, p.want)
		}
	}
}

// nftJSON lists the gate namespace's ruleset with the nft CLI.
func nftJSON(t *testing.T, l *nslab.Lab) []map[string]any {
	t.Helper()
	out, err := l.Gate.Command("nft", "-j", "list", "ruleset").Output()
	if err != nil {
		t.Fatalf("nft -j list ruleset: %v", err)
	}
	var doc struct {
		Nftables []map[string]any `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("nft -j output: %v", err)
	}
	return doc.Nftables
}

// nftCount counts objects of kind ("rule", "set", "table", ...) in table.
func nftCount(objs []map[string]any, kind, family, table string) int {
	n := 0
	for _, o := range objs {
		v, ok := o[kind].(map[string]any)
		if !ok {
			continue
		}
		if kind == "table" {
			if v["family"] == family && v["name"] == table {
				n++
			}
			continue
		}
		if v["family"] == family && v["table"] == table {
			n++
		}
	}
	return n
}

func nft(t *testing.T, l *nslab.Lab, args ...string) string {
	t.Helper()
	out, err := l.Gate.Command("nft", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %v: %v\n%s", args, err, out)
	}
	return string(out)
}
