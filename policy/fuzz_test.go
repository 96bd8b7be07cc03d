package policy

import (
	"testing"
	"time"

	"github.com/otgate/otgate/site"
)

// FuzzCompile feeds arbitrary site files through the loader and, when the
// loader accepts one, through the decision engine: an accepted site always
// compiles, no request panics, Until is after the request's time, and the
// policy compiled from the stored (CBOR) form decides the same. The seed
// corpus is in testdata/fuzz/FuzzCompile and runs with go test.
func FuzzCompile(f *testing.F) {
	// A gateway grant with per-unit modbus blocks.
	gw, err := readFile("../site/testdata/gateway-site.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(gw)
	f.Fuzz(func(t *testing.T, src []byte) {
		s, err := site.Parse("fuzz.yaml", src, site.Options{Now: now})
		if err != nil {
			return // the loader's own fuzz target checks rejections
		}
		p, err := Compile(s)
		if err != nil {
			t.Fatalf("the loader accepted a site the engine cannot compile: %v", err)
		}
		doc, err := site.Compile(s, "fuzz.yaml", src)
		if err != nil {
			t.Fatal(err)
		}
		applied, err := site.Decode(doc)
		if err != nil {
			t.Fatal(err)
		}
		q, err := Compile(&applied.Site)
		if err != nil {
			t.Fatalf("the stored site does not compile: %v", err)
		}
		times := []time.Time{
			time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC),
			time.Date(2026, 10, 25, 0, 45, 0, 0, time.UTC),
			time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC),
		}
		for _, u := range s.Access.Users {
			for _, a := range s.Assets {
				for _, svc := range a.Services {
					for _, tm := range times {
						r := Request{User: u.Name, Asset: a.Name, Protocol: svc.Protocol, Time: tm}
						d := p.Decide(r)
						if !d.Until.IsZero() && !d.Until.After(tm) {
							t.Fatalf("%+v: Until %v is not after the request", r, d.Until)
						}
						if d.Allow && d.Rule == RuleDefaultDeny || d.Rule == "" || d.Reason == "" {
							t.Fatalf("%+v: incoherent decision %+v", r, d)
						}
						e := q.Decide(r)
						if e.Allow != d.Allow || e.Rule != d.Rule || !e.Until.Equal(d.Until) || e.MaxSession != d.MaxSession {
							t.Fatalf("%+v: decisions differ after the CBOR round trip:\n%+v\n%+v", r, d, e)
						}
					}
				}
			}
		}
	})
}
