package audit

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// PayloadFormatter renders a payload record decoded by one protocol
// inspector (see ShowOptions.Formatters); ok false falls back to the
// default rendering. start is the start record of the payload's session
// when the transcript has read it (Show), nil otherwise.
type PayloadFormatter func(p Payload, start *SessionStart) (line string, ok bool)

// PayloadPairer pairs the payload records of one protocol for Show (see
// ShowOptions.Pairers). A record an inspector writes before it forwards a
// request (opens true) and the record that completes that transaction
// later return the same key; ok is false for a payload that pairs with
// nothing.
type PayloadPairer func(p Payload) (key string, opens, ok bool)

// ShowOptions selects and renders records for a transcript.
type ShowOptions struct {
	// Session keeps only the records of this session id.
	Session string
	// Formatters renders payloads by Decoded.Protocol.
	Formatters map[string]PayloadFormatter
	// Pairers, by Decoded.Protocol: Show leaves out a record that opens
	// a pair when the log completes it (the completing record's line
	// says it all, so a transaction is shown once) and shows one that
	// nothing completes (the gate stopped in between). This reads the
	// log twice; the second pass stops where the first ended, so records
	// a running gate appends meanwhile are not shown.
	Pairers map[string]PayloadPairer
	// HexPreview is how many raw bytes a payload line shows (default 16).
	HexPreview int
}

// Show writes a transcript of the log in dir to out, one line per record.
// It checks framing and encoding (not the chain or signatures: use Verify)
// and stops at the first unreadable record with its error.
func Show(out io.Writer, dir string, opts ShowOptions) error {
	// With pairers: the opening records nothing completes, the number of
	// records the first pass read (the second stops there, -1: no limit)
	// and its torn tail.
	var unmatched map[string]int
	limit := -1
	var limitTorn *TornTail
	if len(opts.Pairers) > 0 {
		var err error
		if unmatched, limit, limitTorn, err = unmatchedOpens(dir, opts); err != nil {
			return err
		}
	}
	r, err := NewReader(dir)
	if err != nil {
		return err
	}
	defer r.Close()
	// The open sessions: their start records, for the formatters, and
	// where each started (seq, time).
	open := map[string]openSession{}
	// With opts.Session: records of it read, whether its end was, and the
	// unclean shutdown recorded after it started without an end, if any.
	var read, matched int
	var ended bool
	var cutBy *Entry
	for {
		var e Entry
		var err error
		torn := r.Torn
		if read == limit {
			err, torn = io.EOF, func() *TornTail { return limitTorn }
		} else {
			e, err = r.Next()
		}
		if err == io.EOF {
			t := torn()
			if opts.Session == "" {
				if t != nil {
					fmt.Fprintf(out, "-- %s\n", t)
				}
				return nil
			}
			if matched == 0 {
				msg := fmt.Sprintf("audit: no record of session %q in %s (%d records read)", opts.Session, dir, read)
				if t != nil {
					msg += "; " + t.String()
				}
				return errors.New(msg)
			}
			if !ended {
				if cutBy != nil {
					fmt.Fprintf(out, "-- session %s has no end record: the gate stopped without recording it (unclean shutdown recorded at %s #%d)\n",
						opts.Session, FormatTime(cutBy.Record.Time), cutBy.Record.Seq)
				} else {
					fmt.Fprintf(out, "-- session %s has no end record: it is live, or the gate stopped before recording its end\n", opts.Session)
				}
				if t != nil {
					fmt.Fprintf(out, "-- %s\n", t)
				}
			}
			return nil
		}
		if err != nil {
			return err
		}
		read++
		recovered := isRecovery(e.Body)
		if opts.Session != "" && SessionOf(e.Body) != opts.Session {
			if recovered && matched > 0 && !ended && cutBy == nil {
				cutBy = &e
			}
			continue
		}
		matched++
		var start *SessionStart
		switch v := e.Body.(type) {
		case SessionStart:
			open[v.SessionID] = openSession{start: &v, rec: e.Record}
		case SessionEnd:
			ended = true
			delete(open, v.SessionID)
		case Payload:
			if key, opens, ok := pairOf(v, opts); ok && opens {
				if unmatched[key] == 0 {
					continue // completed later: its completing record is shown
				}
				unmatched[key]--
			}
			start = open[v.SessionID].start
		}
		if _, err := fmt.Fprintln(out, formatEntry(e, opts, start)); err != nil {
			return fmt.Errorf("write transcript: %w", err)
		}
		if recovered {
			// The gate stopped without a clean shutdown (a power cut, a
			// crash): the sessions open then never got an end record.
			// Say which, where the reader meets the recovery.
			cut := slices.SortedFunc(maps.Values(open), func(a, b openSession) int { return cmp.Compare(a.rec.Seq, b.rec.Seq) })
			for _, o := range cut {
				fmt.Fprintf(out, "-- open at this unclean shutdown, no end recorded: session %s (%s -> %s/%s, started %s #%d)\n",
					o.start.SessionID, o.start.User, o.start.Asset, o.start.Protocol, FormatTime(o.rec.Time), o.rec.Seq)
			}
			clear(open)
		}
	}
}

// openSession is a session Show has read the start of and no end.
type openSession struct {
	start *SessionStart
	rec   Record
}

// isRecovery reports whether b is the record of an unclean shutdown that
// the writer found when it reopened the log (EventLogRecovered).
func isRecovery(b Body) bool {
	ev, ok := b.(Event)
	return ok && ev.Type == EventLogRecovered
}

// pairOf applies the pairer of p's protocol, if any.
func pairOf(p Payload, opts ShowOptions) (key string, opens, ok bool) {
	if p.Decoded == nil {
		return "", false, false
	}
	f := opts.Pairers[p.Decoded.Protocol]
	if f == nil {
		return "", false, false
	}
	return f(p)
}

// unmatchedOpens is Show's first pass over the records it selects: it
// counts the opening records by key that no later record completes (a
// completing record matches the earliest open one of its key). Only those
// are kept, so its memory is bounded by the transactions open at once,
// not by the log. It returns them, the number of records read and the
// torn tail; an unreadable record ends the pass with limit -1 (the second
// pass reads up to it and reports it).
func unmatchedOpens(dir string, opts ShowOptions) (unmatched map[string]int, limit int, torn *TornTail, err error) {
	r, err := NewReader(dir)
	if err != nil {
		return nil, 0, nil, err
	}
	defer r.Close()
	unmatched = map[string]int{}
	for n := 0; ; n++ {
		e, err := r.Next()
		if err == io.EOF {
			return unmatched, n, r.Torn(), nil
		}
		if err != nil {
			return unmatched, -1, nil, nil
		}
		p, ok := e.Body.(Payload)
		if !ok || (opts.Session != "" && p.SessionID != opts.Session) {
			continue
		}
		key, opens, ok := pairOf(p, opts)
		switch {
		case !ok:
		case opens:
			unmatched[key]++
		case unmatched[key] > 1:
			unmatched[key]--
		default:
			delete(unmatched, key)
		}
	}
}

// SessionOf returns the session id a body belongs to, or "".
func SessionOf(b Body) string {
	switch v := b.(type) {
	case SessionStart:
		return v.SessionID
	case Payload:
		return v.SessionID
	case SessionEnd:
		return v.SessionID
	case Event:
		return v.SessionID
	}
	return ""
}

// FormatTime renders a record time: UTC, milliseconds.
func FormatTime(ts Timestamp) string {
	return ts.Time().Format("2006-01-02T15:04:05.000Z")
}

// FormatEntry renders one record as a transcript line (after DevPrefix
// for a dev-mode record).
// A payload that a protocol formatter renders is shown as the formatter's
// line alone: it carries its own time.
func FormatEntry(e Entry, opts ShowOptions) string { return formatEntry(e, opts, nil) }

// DevPrefix starts the transcript line of every record written in dev
// mode (Record.Dev).
const DevPrefix = "[DEV] "

// formatEntry is FormatEntry with the start record of a payload's session.
// A dev-mode record's line starts with DevPrefix.
func formatEntry(e Entry, opts ShowOptions, start *SessionStart) string {
	prefix := ""
	if e.Record.Dev {
		prefix = DevPrefix
	}
	if p, ok := e.Body.(Payload); ok && p.Decoded != nil {
		if f := opts.Formatters[p.Decoded.Protocol]; f != nil {
			if line, ok := f(p, start); ok {
				return prefix + line
			}
		}
	}
	return fmt.Sprintf("%s%s #%d %s", prefix, FormatTime(e.Record.Time), e.Record.Seq, FormatBody(e.Record.Time, e.Body, opts))
}

// FormatBody renders a record body; at is the record's time (for "until").
func FormatBody(at Timestamp, b Body, opts ShowOptions) string {
	switch v := b.(type) {
	case SessionStart:
		s := fmt.Sprintf("session %s start %s -> %s (%s) rule %q", v.SessionID, v.User, v.Asset, v.Protocol, v.Rule)
		if v.ValidUntil != 0 {
			s += " until " + untilString(at.Time(), v.ValidUntil.Time())
		}
		if v.Source != "" {
			s += " from " + v.Source
		}
		if v.CertSerial != "" {
			s += " cert " + v.CertSerial
		}
		if v.Endpoint != "" {
			s += " via Modbus/TCP Security at " + v.Endpoint
		}
		return s
	case Payload:
		return "session " + v.SessionID + " " + formatPayload(v, opts)
	case SessionEnd:
		return fmt.Sprintf("session %s end %s (-> %d B, <- %d B)", v.SessionID, v.Reason, v.BytesToAsset, v.BytesToClient)
	case Event:
		s := "event " + v.Type
		for _, f := range []struct{ k, v string }{{"user", v.User}, {"from", v.Source}, {"session", v.SessionID},
			{"asset", v.Asset}, {"protocol", v.Protocol}, {"rule", v.Rule}} {
			if f.v != "" {
				s += " " + f.k + " " + f.v
			}
		}
		if v.Anchor != nil {
			s += fmt.Sprintf(" anchor %d", *v.Anchor)
		}
		if v.Reason != "" {
			s += ": " + v.Reason
		}
		return s
	case Checkpoint:
		return fmt.Sprintf("checkpoint %d..%d head %x key %s", v.First, v.Last, v.Head[:8], v.KeyID)
	case Rotation:
		s := fmt.Sprintf("rotation file %d log %s prev head %x", v.File, v.LogID, v.PrevHead[:8])
		if v.PrevFile != "" {
			s += " after " + v.PrevFile
		}
		return s
	}
	return fmt.Sprintf("%T", b)
}

func untilString(at, until time.Time) string {
	if at.Year() == until.Year() && at.YearDay() == until.YearDay() {
		return until.Format("15:04")
	}
	return until.Format("2006-01-02T15:04Z")
}

func formatPayload(p Payload, opts ShowOptions) string {
	if p.Decoded != nil {
		if f := opts.Formatters[p.Decoded.Protocol]; f != nil {
			if line, ok := f(p, nil); ok {
				return line
			}
		}
		return p.Direction.String() + " " + formatDecoded(*p.Decoded)
	}
	n := opts.HexPreview
	if n <= 0 {
		n = 16
	}
	s := fmt.Sprintf("%s %d bytes", p.Direction, p.Bytes)
	if len(p.Raw) > 0 {
		show := p.Raw
		if len(show) > n {
			show = show[:n]
		}
		s += " " + spacedHex(show)
		if uint64(len(show)) < p.Bytes {
			s += " ..."
		}
	}
	return s
}

func formatDecoded(d Decoded) string {
	var b strings.Builder
	b.WriteString(d.Protocol)
	fmt.Fprintf(&b, " unit %d fc %d", d.Unit, d.Function)
	if d.FunctionName != "" {
		b.WriteString(" " + d.FunctionName)
	}
	if d.Table != "" {
		fmt.Fprintf(&b, " %s %d+%d", d.Table, d.Start, d.Count)
	} else if d.Count > 0 {
		fmt.Fprintf(&b, " %d+%d", d.Start, d.Count)
	}
	if len(d.Values) > 0 {
		vals := make([]string, len(d.Values))
		for i, v := range d.Values {
			vals[i] = strconv.FormatInt(v, 10)
		}
		b.WriteString(" = [" + strings.Join(vals, " ") + "]")
	}
	if d.Outcome != "" {
		b.WriteString(" " + d.Outcome)
	}
	if d.Latency > 0 {
		b.WriteString(" " + time.Duration(d.Latency).String())
	}
	keys := make([]string, 0, len(d.Detail))
	for k := range d.Detail {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, d.Detail[k])
	}
	return b.String()
}

func spacedHex(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, len(b)*3)
	for i, c := range b {
		if i > 0 {
			out = append(out, ' ')
		}
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}
