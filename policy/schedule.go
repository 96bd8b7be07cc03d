package policy

import (
	"slices"
	"time"

	"github.com/otgate/otgate/site"
)

// A grant's schedule is the set of instants at which it applies. It is
// computed on demand for a span of real time as a sorted list of
// half-open intervals, from the grant's local (wall clock) rules:
//
//   - A local time W on a date resolves to the earliest instant whose wall
//     clock reads W or later. On a spring-forward day a time inside the
//     gap (02:30 in Europe/Berlin on 2026-03-29) resolves to the end of
//     the gap (03:00 CEST); on a fall-back day a time that occurs twice
//     resolves to its first occurrence (02:30 CEST on 2026-10-25).
//   - A window range on date D is [resolve(D, start), resolve(D', end)),
//     D' the next day when the range crosses midnight; "24:00" is 00:00
//     of the next day. So "00:00-24:00" lasts 23 hours on a spring-forward
//     day and 25 hours on a fall-back day, and "06:00-22:00" lasts 16
//     hours on both.
//   - A date range is [resolve(From, 00:00), resolve(Until+1 day, 00:00)).
//   - A maintenance window is [Start, End), absolute.
//
// Adjacent and overlapping intervals merge, so "22:00-24:00" and
// "00:00-06:00" on consecutive days make one interval with no edge at
// midnight.

// interval is the half-open span [start, end).
type interval struct{ start, end time.Time }

// intervals is a sorted list of disjoint, non-adjacent intervals.
type intervals []interval

func (s intervals) contains(t time.Time) bool {
	_, found := slices.BinarySearchFunc(s, t, func(iv interval, t time.Time) int {
		switch {
		case !iv.end.After(t):
			return -1
		case iv.start.After(t):
			return 1
		}
		return 0
	})
	return found
}

// normalize sorts and merges in place.
func normalize(in []interval) intervals {
	in = slices.DeleteFunc(in, func(iv interval) bool { return !iv.end.After(iv.start) })
	slices.SortFunc(in, func(a, b interval) int { return a.start.Compare(b.start) })
	var out intervals
	for _, iv := range in {
		if n := len(out); n > 0 && !iv.start.After(out[n-1].end) {
			if iv.end.After(out[n-1].end) {
				out[n-1].end = iv.end
			}
			continue
		}
		out = append(out, iv)
	}
	return out
}

// intersect returns the instants in both a and b.
func intersect(a, b intervals) intervals {
	var out intervals
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		s := later(a[i].start, b[j].start)
		e := earlier(a[i].end, b[j].end)
		if e.After(s) {
			out = append(out, interval{s, e})
		}
		if a[i].end.Before(b[j].end) {
			i++
		} else {
			j++
		}
	}
	return out
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// wallClock returns t's wall clock reading in loc as a UTC time, so wall
// clock readings compare with Before/After.
func wallClock(t time.Time, loc *time.Location) time.Time {
	l := t.In(loc)
	return time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), l.Second(), l.Nanosecond(), time.UTC)
}

// resolveWall returns the earliest instant whose wall clock in loc reads
// the local time (date y-m-d plus minutes after its midnight, normalised:
// 1440 is the next day's 00:00) or later.
func resolveWall(y int, m time.Month, d, minutes int, loc *time.Location) time.Time {
	want := time.Date(y, m, d, 0, minutes, 0, 0, time.UTC)
	t := time.Date(y, m, d, 0, minutes, 0, 0, loc)
	got := wallClock(t, loc)
	switch {
	case got.After(want):
		// want lies in a gap (clocks jumped forward past it); the first
		// instant after the gap is where the zone period of t starts.
		if start, _ := t.ZoneBounds(); !start.IsZero() && !wallClock(start, loc).Before(want) {
			return start
		}
		return t
	case got.Before(want):
		// Go resolved before the gap; the gap ends where t's period ends.
		if _, end := t.ZoneBounds(); !end.IsZero() {
			return end
		}
		return t
	}
	// want occurs at t; if the previous zone period also reaches it (the
	// clocks went back), its first occurrence is in that period.
	start, _ := t.ZoneBounds()
	if start.IsZero() {
		return t
	}
	_, prevOffset := start.Add(-time.Nanosecond).Zone()
	first := time.Unix(want.Unix()-int64(prevOffset), 0)
	if first.Before(start) && wallClock(first, loc).Equal(want) {
		return first
	}
	return t
}

// localDate is a calendar day with arithmetic.
type localDate struct {
	y int
	m time.Month
	d int
}

func dateOf(t time.Time, loc *time.Location) localDate {
	y, m, d := t.In(loc).Date()
	return localDate{y, m, d}
}

func (d localDate) add(days int) localDate {
	y, m, dd := time.Date(d.y, d.m, d.d+days, 12, 0, 0, 0, time.UTC).Date()
	return localDate{y, m, dd}
}

func (d localDate) weekday() time.Weekday {
	return time.Date(d.y, d.m, d.d, 12, 0, 0, 0, time.UTC).Weekday()
}

func (d localDate) after(e localDate) bool {
	return time.Date(d.y, d.m, d.d, 0, 0, 0, 0, time.UTC).After(time.Date(e.y, e.m, e.d, 0, 0, 0, 0, time.UTC))
}

// windowIntervals returns the instances of the weekly windows that
// overlap [a, b).
func windowIntervals(ws []site.Window, loc *time.Location, a, b time.Time) []interval {
	var out []interval
	last := dateOf(b, loc).add(1)
	for day := dateOf(a, loc).add(-1); !day.after(last); day = day.add(1) {
		wd := day.weekday()
		for _, w := range ws {
			if !w.HasDay(wd) {
				continue
			}
			for _, r := range w.Hours {
				end := r.End
				if r.CrossesMidnight() {
					end += 24 * 60
				}
				iv := interval{resolveWall(day.y, day.m, day.d, r.Start, loc), resolveWall(day.y, day.m, day.d, end, loc)}
				if iv.end.After(a) && iv.start.Before(b) {
					out = append(out, iv)
				}
			}
		}
	}
	return out
}

// dateIntervals returns the date ranges as instants.
func dateIntervals(ds []site.DateRange, loc *time.Location) []interval {
	out := make([]interval, 0, len(ds))
	for _, r := range ds {
		out = append(out, interval{
			resolveWall(r.From.Year, r.From.Month, r.From.Day, 0, loc),
			resolveWall(r.Until.Year, r.Until.Month, r.Until.Day+1, 0, loc),
		})
	}
	return out
}

// clip limits s to [a, b).
func clip(s intervals, a, b time.Time) intervals {
	return intersect(s, intervals{{a, b}})
}
