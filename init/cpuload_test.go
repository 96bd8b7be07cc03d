package main

import "testing"

func TestParseCPUTimes(t *testing.T) {
	for _, tc := range []struct {
		stat      string
		busy, tot uint64
		ok        bool
	}{
		{"cpu  10 1 5 80 4 0 0 0 7 0\ncpu0 5 0 2 40 2 0 0 0 0 0\n", 16, 100, true},
		{"cpu  10 1 5 80\n", 16, 96, true},
		{"cpu0 10 1 5 80 4\n", 0, 0, false},
		{"cpu  10 x 5 80 4\n", 0, 0, false},
		{"", 0, 0, false},
	} {
		got, ok := parseCPUTimes([]byte(tc.stat))
		if ok != tc.ok || got.busy != tc.busy || got.total != tc.tot {
			t.Errorf("parseCPUTimes(%q) = %+v, %v; want busy %d total %d, %v", tc.stat, got, ok, tc.busy, tc.tot, tc.ok)
		}
	}
	if s := busySince(cpuTimes{10, 100}, cpuTimes{55, 150}); s != ", CPUs 90% busy since init started" {
		t.Errorf("busySince = %q", s)
	}
	if s := busySince(cpuTimes{10, 100}, cpuTimes{10, 100}); s != "" {
		t.Errorf("busySince over no time = %q", s)
	}
	if s := busySince(cpuTimes{}, cpuTimes{55, 150}); s != "" {
		t.Errorf("busySince from an unknown start = %q", s)
	}
}
