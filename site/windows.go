package site

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

var dayNames = map[time.Weekday]string{
	time.Sunday: "sun", time.Monday: "mon", time.Tuesday: "tue", time.Wednesday: "wed",
	time.Thursday: "thu", time.Friday: "fri", time.Saturday: "sat",
}

func parseDay(s string) (time.Weekday, bool) {
	for d, n := range dayNames {
		if n == s {
			return d, true
		}
	}
	return 0, false
}

// ParseDays parses one entry of a window's days: "mon", or a range
// "mon-fri" (wrapping ranges like "fri-mon" run through the weekend).
func ParseDays(s string) (uint8, error) {
	a, b, isRange := strings.Cut(s, "-")
	first, ok1 := parseDay(a)
	last, ok2 := first, true
	if isRange {
		last, ok2 = parseDay(b)
	}
	if !ok1 || !ok2 {
		return 0, fmt.Errorf("bad day %q (want mon, tue, wed, thu, fri, sat, sun or a range like mon-fri)", s)
	}
	var set uint8
	for d := first; ; d = (d + 1) % 7 {
		set |= 1 << d
		if d == last {
			break
		}
	}
	return set, nil
}

// ParseTimeRange parses "14:00-16:00"; "22:00-06:00" crosses midnight;
// "00:00-24:00" is the whole day.
func ParseTimeRange(s string) (TimeRange, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return TimeRange{}, fmt.Errorf("bad time range %q (want HH:MM-HH:MM, e.g. 06:00-22:00)", s)
	}
	start, err := parseClock(a, false)
	if err != nil {
		return TimeRange{}, fmt.Errorf("time range %q: %w", s, err)
	}
	end, err := parseClock(b, true)
	if err != nil {
		return TimeRange{}, fmt.Errorf("time range %q: %w", s, err)
	}
	if start == end || (start == 0 && end == 0) {
		return TimeRange{}, fmt.Errorf("time range %q is empty (for the whole day write 00:00-24:00)", s)
	}
	if end == 24*60 && start == 0 {
		return TimeRange{Start: 0, End: 24 * 60}, nil
	}
	if end == 0 {
		end = 24 * 60 // "22:00-00:00" runs to midnight
	}
	return TimeRange{Start: start, End: end}, nil
}

// parseClock parses "HH:MM" into minutes after midnight; "24:00" only as
// an end.
func parseClock(s string, isEnd bool) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) != 2 || len(m) != 2 || !digits(h) || !digits(m) {
		return 0, fmt.Errorf("bad time %q (want HH:MM)", s)
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && (mm != 0 || !isEnd)) {
		return 0, fmt.Errorf("bad time %q (want 00:00..23:59, or 24:00 as an end)", s)
	}
	return hh*60 + mm, nil
}

// digits reports whether s is made of ASCII digits only (strconv.Atoi
// takes a sign too: "+6" would read as 6, "-0" as 0).
func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ParseDate parses "2026-03-29".
func ParseDate(s string) (Date, error) {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return Date{}, fmt.Errorf("bad date %q (want YYYY-MM-DD)", s)
	}
	return Date{t.Year(), t.Month(), t.Day()}, nil
}

func decodeWindow(d *decoder, n *yaml.Node, p string) (Window, bool) {
	f := d.fields(n, p, "days", "hours")
	if f == nil {
		return Window{}, false
	}
	w := Window{Days: AllDays}
	ok := true
	if len(f) == 0 {
		d.nodeErrorf(n, p, "empty window: give days, hours or both")
		return w, false
	}
	if v, has := f["days"]; has {
		w.Days = 0
		dp := join(p, "days")
		items := d.list(v, dp)
		if len(items) == 0 {
			d.nodeErrorf(v, dp, "want at least one day (or leave days out for every day)")
			ok = false
		}
		for i, it := range items {
			s, good := d.str(it, index(dp, i))
			if !good {
				ok = false
				continue
			}
			set, err := ParseDays(strings.ToLower(s))
			if err != nil {
				d.nodeErrorf(it, index(dp, i), "%v", err)
				ok = false
				continue
			}
			w.Days |= set
		}
	}
	if v, has := f["hours"]; has {
		hp := join(p, "hours")
		items := d.list(v, hp)
		if len(items) == 0 {
			d.nodeErrorf(v, hp, "want at least one time range (or leave hours out for whole days)")
			ok = false
		}
		for i, it := range items {
			s, good := d.str(it, index(hp, i))
			if !good {
				ok = false
				continue
			}
			r, err := ParseTimeRange(s)
			if err != nil {
				d.nodeErrorf(it, index(hp, i), "%v", err)
				ok = false
				continue
			}
			w.Hours = append(w.Hours, r)
		}
	} else {
		w.Hours = []TimeRange{{Start: 0, End: 24 * 60}}
	}
	return w, ok
}

func decodeDateRange(d *decoder, n *yaml.Node, p string) (DateRange, bool) {
	f := d.fields(n, p, "from", "until")
	d.require(n, p, f, "from", "until")
	if f == nil || f["from"] == nil || f["until"] == nil {
		return DateRange{}, false
	}
	var r DateRange
	from, ok1 := d.date(f["from"], join(p, "from"))
	until, ok2 := d.date(f["until"], join(p, "until"))
	if !ok1 || !ok2 {
		return r, false
	}
	if until.Before(from) {
		d.nodeErrorf(f["until"], join(p, "until"), "until %s is before from %s", until, from)
		return r, false
	}
	return DateRange{From: from, Until: until}, true
}

func (d *decoder) date(n *yaml.Node, path string) (Date, bool) {
	s, ok := d.scalar(n, path, "a date (YYYY-MM-DD)", "!!str", "!!timestamp")
	if !ok {
		return Date{}, false
	}
	v, err := ParseDate(s)
	if err != nil {
		d.nodeErrorf(n, path, "%v", err)
		return Date{}, false
	}
	return v, true
}
