package proxy

import (
	"strings"
	"testing"
	"time"
)

// A session ended at its deadline says what the deadline was: the rule's
// window when the rule's end is what came first (or came with the
// certificate's: login cuts a certificate at the window's end), else the
// client certificate.
func TestUntilReason(t *testing.T) {
	end := time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)
	s := &session{rule: "engineer-day", certEnd: end}
	for _, c := range []struct {
		name           string
		until, ruleEnd time.Time
		want           string
	}{
		{"window and certificate end together", end, end, `decision expired: rule "engineer-day" allowed it until 2026-11-25T18:00:00Z`},
		{"window first", end.Add(-time.Hour), end.Add(-time.Hour), `rule "engineer-day" allowed it until 2026-11-25T17:00:00Z`},
		{"certificate first", end, end.Add(time.Hour), "the client certificate that opened it ended at 2026-11-25T18:00:00Z"},
		{"rule without an end", end, time.Time{}, "the client certificate that opened it ended at"},
	} {
		if got := s.untilReason(c.until, c.ruleEnd); !strings.HasPrefix(got, EndUntil+": ") || !strings.Contains(got, c.want) {
			t.Errorf("%s: %q, want it to contain %q", c.name, got, c.want)
		}
	}
}
