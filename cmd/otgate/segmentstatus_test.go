package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/otgate/otgate/services/segment"
)

// serveSegment answers every request on a segment status socket with st.
func serveSegment(t *testing.T, st *segment.Status) string {
	t.Helper()
	return serveSocket(t, "segment.sock", func(c net.Conn) {
		var req segment.Request
		if cbor.NewDecoder(c).Decode(&req) == nil {
			b, _ := cbor.Marshal(segment.Response{Status: st})
			c.Write(b)
		}
	})
}

// `otgate segment status` exits 1 when the service reports itself
// degraded (as `otgate status` does when the gate is not healthy), in
// words and in JSON, with what is wrong on stderr; 0 when it is not.
// Before, it printed DEGRADED and exited 0.
func TestSegmentStatusExitsOneWhenDegraded(t *testing.T) {
	home := t.TempDir()
	ok := &segment.Status{Applied: time.Now(), Applies: 1, Ruleset: "table inet otgate", Forwarding: "on"}
	for _, json := range []bool{false, true} {
		args := []string{"segment", "-socket", serveSegment(t, ok), "status"}
		if json {
			args = []string{"segment", "-socket", serveSegment(t, ok), "-json", "status"}
		}
		if r := runOtgate(t, home, "", args...); r.code != 0 || r.stderr != "" {
			t.Errorf("%v, not degraded: exit %d, stderr %q; want 0", args, r.code, r.stderr)
		}
	}
	bad := *ok
	bad.Degraded = "rp_filter on eth1 is 2 and cannot be set: forwarding is off"
	for _, json := range []bool{false, true} {
		args := []string{"segment", "-socket", serveSegment(t, &bad), "status"}
		if json {
			args = []string{"segment", "-socket", serveSegment(t, &bad), "-json", "status"}
		}
		r := runOtgate(t, home, "", args...)
		if r.code != 1 || !strings.Contains(r.stderr, "segmentation is DEGRADED: "+bad.Degraded) {
			t.Errorf("%v, degraded: exit %d, stderr %q; want exit 1 naming it", args, r.code, r.stderr)
		}
		if json && !strings.Contains(r.stdout, `"degraded"`) {
			t.Errorf("%v: the JSON %q does not carry the degradation", args, r.stdout)
		}
	}
}
