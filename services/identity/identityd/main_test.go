package identityd

import (
	"strings"
	"testing"
)

// Every line starts with the prefix, however the lines are split across
// writes.
func TestDevModeLogPrefixesEveryLine(t *testing.T) {
	var b strings.Builder
	w := devModeLog(&b)
	for _, s := range []string{"identity: one\n", "identity: two ", "continued\nidentity: three\nidentity: four\n", "\n", "identity: "} {
		if n, err := w.Write([]byte(s)); err != nil || n != len(s) {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	want := "DEV MODE: identity: one\nDEV MODE: identity: two continued\nDEV MODE: identity: three\nDEV MODE: identity: four\nDEV MODE: \nDEV MODE: identity: "
	if b.String() != want {
		t.Fatalf("got\n%q\nwant\n%q", b.String(), want)
	}
}
