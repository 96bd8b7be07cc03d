package timesync

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestSelect(t *testing.T) {
	s := time.Second
	ms := time.Millisecond
	bad := errors.New("timeout")
	cases := []struct {
		name     string
		offsets  []time.Duration // 0 with err: a dropped sample
		errs     []bool
		want     time.Duration
		used     []string
		outliers []string
		err      error
	}{
		{name: "none valid", offsets: []time.Duration{s}, errs: []bool{true}, err: ErrNoValid},
		{name: "one", offsets: []time.Duration{3 * s}, want: 3 * s, used: []string{"a"}},
		{name: "one of two valid", offsets: []time.Duration{3 * s, 100 * s}, errs: []bool{false, true}, want: 3 * s, used: []string{"a"}},
		{name: "two agree: mean", offsets: []time.Duration{3 * s, 3*s + 200*ms}, want: 3*s + 100*ms, used: []string{"a", "b"}},
		{name: "two disagree", offsets: []time.Duration{3 * s, 3600 * s}, err: ErrDisagree},
		{name: "three, one liar", offsets: []time.Duration{10 * ms, 3600 * s, 12 * ms}, want: 11 * ms, used: []string{"a", "c"}, outliers: []string{"b"}},
		{name: "three agree: median", offsets: []time.Duration{10 * ms, 30 * ms, 20 * ms}, want: 20 * ms, used: []string{"a", "b", "c"}},
		{name: "four, two against two", offsets: []time.Duration{0, 0, 3600 * s, 3600 * s}, err: ErrDisagree},
		{name: "five, two liars", offsets: []time.Duration{-7200 * s, 5 * ms, 7 * ms, 7200 * s, 6 * ms}, want: 6 * ms, used: []string{"b", "c", "e"}, outliers: []string{"a", "d"}},
		{name: "three, all apart", offsets: []time.Duration{0, 10 * s, 20 * s}, err: ErrDisagree},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var samples []Sample
			for i, o := range tc.offsets {
				smp := Sample{Server: string(rune('a' + i)), Offset: o}
				if i < len(tc.errs) && tc.errs[i] {
					smp.Err = bad
				}
				samples = append(samples, smp)
			}
			got, used, err := Select(samples, DefaultAgreement)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v; want %v", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want || !slices.Equal(used, tc.used) {
				t.Fatalf("got %s from %v (%v); want %s from %v", got, used, err, tc.want, tc.used)
			}
			var out []string
			for _, s := range samples {
				if s.Outlier {
					out = append(out, s.Server)
				}
			}
			if !slices.Equal(out, tc.outliers) {
				t.Errorf("outliers %v; want %v", out, tc.outliers)
			}
		})
	}
}

func TestSigned(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "+0.000000s", 1500 * time.Millisecond: "+1.500000s", -12 * time.Microsecond: "-0.000012s",
		-(10800*time.Second + 5*time.Millisecond): "-10800.005000s",
	} {
		if got := signed(d); got != want {
			t.Errorf("signed(%s) = %q; want %q", d, got, want)
		}
	}
}
