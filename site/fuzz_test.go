package site

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the loader. It must never panic;
// a rejected file is an ErrorList whose every entry names the file; an
// accepted file compiles deterministically and survives a round trip.
// The seed corpus is in testdata/fuzz/FuzzParse and runs with go test.
func FuzzParse(f *testing.F) {
	f.Add(readTestdata(f, "plant.yaml"))
	f.Add(readTestdata(f, "gateway-site.yaml")) // modbus: as per-unit blocks
	f.Fuzz(func(t *testing.T, src []byte) {
		s, err := Parse("fuzz.yaml", src, Options{Now: now})
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error is not a non-empty ErrorList: %T %v", err, err)
			}
			for _, e := range list {
				if e.File != "fuzz.yaml" || e.Msg == "" {
					t.Fatalf("error does not name the file or says nothing: %+v", e)
				}
			}
			if s != nil {
				t.Fatal("a Site returned with errors")
			}
			return
		}
		a, err := Compile(s, "fuzz.yaml", src)
		if err != nil {
			t.Fatalf("accepted site does not compile: %v", err)
		}
		b, _ := Compile(s, "fuzz.yaml", src)
		if !bytes.Equal(a, b) {
			t.Fatal("compile is not deterministic")
		}
		back, err := Decode(a)
		if err != nil {
			t.Fatalf("compiled document does not decode: %v", err)
		}
		c, err := Compile(&back.Site, "fuzz.yaml", src)
		if err != nil || !bytes.Equal(a, c) {
			t.Fatalf("round trip changed the document (err %v)", err)
		}
	})
}
