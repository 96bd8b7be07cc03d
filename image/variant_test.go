package image

import (
	"encoding/json"
	"strings"
	"testing"
)

// An image with the debug shell, the test services or demo credentials
// never says it is production: its manifest's variant names what it
// carries, and so does its boot loader entry; only an image with none of
// them is "production".
func TestOnlyAPlainImageIsProduction(t *testing.T) {
	b := testBoard(t, "generic-x86_64")
	for _, tc := range []struct {
		debug, test, demo bool
		want              string
	}{
		{false, false, false, "production"},
		{true, false, false, "debug"},
		{false, true, false, "test"},
		{false, false, true, "demo"},
		{true, true, false, "debug+test"},
		{true, false, true, "debug+demo"},
	} {
		c := &config{debug: tc.debug, test: tc.test, demo: tc.demo}
		v := variant(c)
		if v != tc.want {
			t.Errorf("debug %v test %v demo %v: variant %q, want %q", tc.debug, tc.test, tc.demo, v, tc.want)
		}
		mj, err := (&Manifest{Board: b.Name, Variant: v, Debug: tc.debug, Test: tc.test}).marshal()
		if err != nil {
			t.Fatal(err)
		}
		var back map[string]any
		if err := json.Unmarshal(mj, &back); err != nil || back["variant"] != tc.want {
			t.Errorf("manifest %s: variant %v, want %q", mj, back["variant"], tc.want)
		}
		title, _, _ := strings.Cut(string(loaderEntry(b, v)), "\n")
		if tc.want == "production" {
			if title != "title otgate" {
				t.Errorf("production boot entry title %q, want plain otgate", title)
			}
			continue
		}
		if !strings.Contains(title, strings.ToUpper(tc.want)) || !strings.Contains(title, "not for production") {
			t.Errorf("%s image: boot entry title %q does not say so", tc.want, title)
		}
	}
}
