package main

import (
	"math"
	"time"
)

// maxDuration is the largest time.Duration: sums of configured durations
// saturate at it instead of wrapping to a negative or tiny value.
const maxDuration = time.Duration(math.MaxInt64)

// addDur is a+b for non-negative durations, saturating at maxDuration.
func addDur(a, b time.Duration) time.Duration {
	if a > maxDuration-b {
		return maxDuration
	}
	return a + b
}

// mulDur is n*d for non-negative n and d, saturating at maxDuration.
func mulDur(n int, d time.Duration) time.Duration {
	if n == 0 || d == 0 {
		return 0
	}
	if d > maxDuration/time.Duration(n) {
		return maxDuration
	}
	return time.Duration(n) * d
}
