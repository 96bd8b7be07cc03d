package timesync

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Sample is one server's answer to one poll.
type Sample struct {
	Server  string
	Offset  time.Duration // add to the local clock to get the server's time
	RTT     time.Duration
	Stratum uint8
	// Err: the query failed or the reply failed validation; the sample
	// is not used.
	Err error
	// Outlier: valid, but too far from the others (Select).
	Outlier bool
	// NTS: the server is an NTS server (Server is its key exchange's
	// host:port) and a valid sample's reply was authenticated.
	NTS bool
}

// Valid says whether the sample may be used.
func (s Sample) Valid() bool { return s.Err == nil }

// String describes the sample for the log: "192.0.2.1 +1.234567s
// (stratum 2, rtt 1.2ms)", or the reason it was dropped.
//
// An NTS server's starts with "nts ".
func (s Sample) String() string {
	name := s.Server
	if s.NTS {
		name = "nts " + name
	}
	switch {
	case s.Err != nil:
		return fmt.Sprintf("%s dropped: %v", name, s.Err)
	case s.Outlier:
		return fmt.Sprintf("%s %s outlier (stratum %d, rtt %s)", name, signed(s.Offset), s.Stratum, s.RTT.Round(10*time.Microsecond))
	}
	return fmt.Sprintf("%s %s (stratum %d, rtt %s)", name, signed(s.Offset), s.Stratum, s.RTT.Round(10*time.Microsecond))
}

// DefaultAgreement is how far apart valid servers may be and still
// count as agreeing.
const DefaultAgreement = time.Second

// Errors of Select.
var (
	ErrNoValid  = errors.New("no valid reply")
	ErrDisagree = errors.New("servers disagree")
)

// Select picks the offset the valid samples agree on and marks the
// outliers in samples. One valid sample is taken as it is. Two must be
// within agreement of each other (their mean is used). Three or more:
// those farther than agreement from their median are outliers; more
// than half must remain, and the median of those is the offset. It
// returns the servers used.
func Select(samples []Sample, agreement time.Duration) (time.Duration, []string, error) {
	var valid []int
	for i := range samples {
		samples[i].Outlier = false
		if samples[i].Valid() {
			valid = append(valid, i)
		}
	}
	offsets := func(idx []int) []time.Duration {
		out := make([]time.Duration, len(idx))
		for k, i := range idx {
			out[k] = samples[i].Offset
		}
		return out
	}
	servers := func(idx []int) []string {
		out := make([]string, len(idx))
		for k, i := range idx {
			out[k] = samples[i].Server
		}
		return out
	}
	switch len(valid) {
	case 0:
		return 0, nil, ErrNoValid
	case 1:
		return samples[valid[0]].Offset, servers(valid), nil
	case 2:
		a, b := samples[valid[0]].Offset, samples[valid[1]].Offset
		if absDur(a-b) > agreement {
			return 0, nil, fmt.Errorf("%w: %s and %s are %s apart (more than %s)", ErrDisagree,
				samples[valid[0]].Server, samples[valid[1]].Server, absDur(a-b).Round(time.Millisecond), agreement)
		}
		return a + (b-a)/2, servers(valid), nil
	}
	m := median(offsets(valid))
	var keep []int
	for _, i := range valid {
		if absDur(samples[i].Offset-m) > agreement {
			samples[i].Outlier = true
			continue
		}
		keep = append(keep, i)
	}
	if 2*len(keep) <= len(valid) {
		return 0, nil, fmt.Errorf("%w: no majority of %d valid replies within %s of each other", ErrDisagree, len(valid), agreement)
	}
	return median(offsets(keep)), servers(keep), nil
}

// median of a non-empty list (the mean of the middle two for an even
// count).
func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return s[n/2-1] + (s[n/2]-s[n/2-1])/2
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// signed formats an offset with its sign and microsecond precision:
// "+1.234567s", "-0.000012s".
func signed(d time.Duration) string {
	sign := "+"
	if d < 0 {
		sign, d = "-", -d
	}
	return fmt.Sprintf("%s%d.%06ds", sign, d/time.Second, (d%time.Second)/time.Microsecond)
}

// describe lists samples for a log line.
func describe(samples []Sample) string {
	parts := make([]string, len(samples))
	for i, s := range samples {
		parts[i] = s.String()
	}
	return strings.Join(parts, "; ")
}
