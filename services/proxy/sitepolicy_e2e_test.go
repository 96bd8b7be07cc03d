package proxy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/policy"
)

// windowSite is a site file with users, roles and grants as production
// loads it (SiteFileLoader: site.Load, then policy.Compile). Every window
// is on Wednesdays in Europe/Berlin; the test's clock is a Wednesday.
// Its zones are the harness's (siteYAML).
var windowSite = siteYAML[:strings.Index(siteYAML, "assets:")] + `assets:
  - name: echo-1
    zone: cell
    address: 10.99.0.2
    services:
      - protocol: tcp
        port: 7
  - name: echo-2
    zone: cell
    address: 10.99.0.3
    services:
      - protocol: tcp
        port: 7
  - name: echo-3
    zone: cell
    address: 10.99.0.4
    services:
      - protocol: tcp
        port: 7
  - name: echo-4
    zone: cell
    address: 10.99.0.5
    services:
      - protocol: tcp
        port: 7
roles:
  - name: engineer
    description: automation engineers
users:
  - name: alice
    roles: [engineer]
  - name: erin
  - name: frank
  - name: gina
  - name: hank
  - name: ivan
  - name: kate
grants:
  - name: engineer-day
    subjects:
      roles: [engineer]
    targets:
      assets: [echo-1]
    protocols: [tcp]
    time_zone: Europe/Berlin
    windows:
      - days: [wed]
        hours: ["08:00-18:00"]
  - name: engineer-evening
    subjects:
      roles: [engineer]
    targets:
      assets: [echo-2]
    protocols: [tcp]
    time_zone: Europe/Berlin
    windows:
      - days: [wed]
        hours: ["20:00-22:00"]
  - name: engineer-echo3
    subjects:
      roles: [engineer]
    targets:
      assets: [echo-3]
    protocols: [tcp]
  - name: alice-not-echo3
    effect: deny
    subjects:
      users: [alice]
    targets:
      assets: [echo-3]
  - name: erin-short
    subjects:
      users: [erin]
    targets:
      assets: [echo-1]
    protocols: [tcp]
    time_zone: Europe/Berlin
    windows:
      - days: [wed]
        hours: ["10:00-11:00"]
  - name: frank-morning
    subjects:
      users: [frank]
    targets:
      assets: [echo-1]
    protocols: [tcp]
    time_zone: Europe/Berlin
    windows:
      - days: [wed]
        hours: ["09:00-12:00"]
  - name: frank-noon
    subjects:
      users: [frank]
    targets:
      assets: [echo-2]
    protocols: [tcp]
    time_zone: Europe/Berlin
    windows:
      - days: [mon-fri]
        hours: ["10:00-13:00"]
  - name: gina-any
    subjects:
      users: [gina]
    targets:
      assets: [echo-1]
    protocols: [tcp]
  - name: ivan-morning
    subjects:
      users: [ivan]
    targets:
      assets: [echo-1]
    protocols: [tcp]
    time_zone: Europe/Berlin
    windows:
      - days: [wed]
        hours: ["09:00-12:00"]
  - name: ivan-afternoon
    subjects:
      users: [ivan]
    targets:
      assets: [echo-2]
    protocols: [tcp]
    time_zone: Europe/Berlin
    windows:
      - days: [wed]
        hours: ["12:00-15:00"]
  - name: kate-morning
    subjects:
      users: [kate]
    targets:
      assets: [echo-1]
    protocols: [tcp]
    time_zone: Europe/Berlin
    windows:
      - days: [wed]
        hours: ["09:00-11:30"]
  - name: kate-midday
    subjects:
      users: [kate]
    targets:
      assets: [echo-1]
    protocols: [tcp]
    time_zone: Europe/Berlin
    windows:
      - days: [wed]
        hours: ["11:30-13:00"]
  - name: hank-weekend
    subjects:
      users: [hank]
    targets:
      assets: [echo-1]
    protocols: [tcp]
    time_zone: Europe/Berlin
    windows:
      - days: [sat, sun]
`

// nextWednesday returns the next Wednesday (after today) at h:m in loc.
// The gate's clocks run in the future, never the past: the user CA
// certificate was made at the real time.
func nextWednesday(loc *time.Location, h, m int) time.Time {
	now := time.Now().In(loc)
	days := (int(time.Wednesday) - int(now.Weekday()) + 7) % 7
	if days == 0 {
		days = 7
	}
	return time.Date(now.Year(), now.Month(), now.Day()+days, h, m, 0, 0, loc)
}

// TestEndToEndSitePolicy is the end-to-end test on the real policy path:
// the site file with users, roles and grants, loaded and compiled as
// production does it (SiteFileLoader), weekly windows in an IANA time
// zone. The gate's clock (Config.Now and the user CA's) is moved to a
// Wednesday; TOTP codes stay on the real clock (oathtool).
func TestEndToEndSitePolicy(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skipf("no zone data: %v", err)
	}
	l := newLab(t)
	go serveEcho(l.listenPlant(t, 7))
	path := filepath.Join(t.TempDir(), "site.yaml")
	if err := os.WriteFile(path, []byte(windowSite), 0o600); err != nil {
		t.Fatal(err)
	}
	var offset atomic.Int64
	g := newGate(t, l, func(c *Config) {
		c.LoadPolicy = SiteFileLoader(path)
		c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		c.IdleTimeout = 24 * time.Hour // the clock jumps hours ahead
	})
	// setClock makes the gate's "now" fake, from where it runs on.
	setClock := func(fake time.Time) {
		d := int64(time.Until(fake))
		offset.Store(d)
		g.caOffset.Store(d)
	}
	gateNow := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	day := nextWednesday(berlin, 10, 30)
	at := func(h, m int) time.Time {
		return time.Date(day.Year(), day.Month(), day.Day(), h, m, 0, 0, berlin)
	}
	setClock(day)

	// login enrols user and logs in with an oathtool code.
	login := func(user string) (*client.LoginResult, *client.Session, error) {
		t.Helper()
		res, dir, err := g.login(user, "correct horse battery", oathtool(t, g.enrol(user)))
		if err != nil {
			return nil, nil, err
		}
		s, err := client.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		return res, s, nil
	}
	mustLogin := func(user string) (*client.LoginResult, *client.Session) {
		t.Helper()
		res, s, err := login(user)
		if err != nil {
			t.Fatalf("login %s: %v", user, err)
		}
		return res, s
	}

	aliceRes, alice := mustLogin("alice")

	t.Run("certificate ends with the latest window", func(t *testing.T) {
		// alice: engineer-day (open until 18:00) is all she may reach now;
		// the 8 h maximum would run to 18:30.
		if !aliceRes.NotAfter.Equal(at(18, 0)) {
			t.Errorf("alice's certificate valid until %v, want the end of engineer-day %v", aliceRes.NotAfter, at(18, 0))
		}
		// frank: echo-1 until 12:00 and echo-2 until 13:00: the later.
		res, _ := mustLogin("frank")
		if !res.NotAfter.Equal(at(13, 0)) {
			t.Errorf("frank's certificate valid until %v, want %v (the latest end of his open windows)", res.NotAfter, at(13, 0))
		}
		// ivan: echo-1 until 12:00, then echo-2 from 12:00 to 15:00 under
		// another grant: his access goes on without a break, and so does
		// his certificate (alice's engineer-evening, after a gap, does not
		// extend hers).
		res, _ = mustLogin("ivan")
		if !res.NotAfter.Equal(at(15, 0)) {
			t.Errorf("ivan's certificate valid until %v, want %v (two grants one after the other)", res.NotAfter, at(15, 0))
		}
		// gina: a grant without a window: the maximum validity.
		res, _ = mustLogin("gina")
		if want := gateNow().Add(8 * time.Hour); res.NotAfter.Before(want.Add(-time.Minute)) || res.NotAfter.After(want) {
			t.Errorf("gina's certificate valid until %v, want about %v (8 h)", res.NotAfter, want)
		}
	})

	t.Run("login with no grant open now is refused", func(t *testing.T) {
		_, _, err := login("hank")
		var ge *client.GateError
		if !errors.As(err, &ge) || ge.Code != "refused" || !strings.Contains(ge.Msg, "no grant allows you any asset now") {
			t.Fatalf("login of hank (weekend only) on a Wednesday: %v, want refused: no grant allows any asset now", err)
		}
		g.waitEvent(EventLoginNoopen, "hank", "no grant allows this user any asset now")
		if _, err := os.Stat(filepath.Join(g.dir, "client-hank", client.KeyFile)); !os.IsNotExist(err) {
			t.Errorf("refused login left a key: %v", err)
		}
	})

	t.Run("open window", func(t *testing.T) {
		c, r, err := tunnel(t, alice, "echo-1", "tcp")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if r.Rule != "engineer-day" || !r.UntilTime().Equal(at(18, 0)) {
			t.Fatalf("reply %+v: want rule engineer-day until %v", r, at(18, 0))
		}
		echoRoundTrip(t, c, "in the window")
		ctx := t.Context()
		rsp, err := alice.Assets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(rsp.Assets) != 1 || rsp.Assets[0].Name != "echo-1" || rsp.Assets[0].Rule != "engineer-day" || !rsp.Assets[0].UntilTime().Equal(at(18, 0)) {
			t.Fatalf("assets = %+v, want only echo-1 by engineer-day until 18:00", rsp.Assets)
		}
	})

	t.Run("outside the time window", func(t *testing.T) {
		_, _, err := tunnel(t, alice, "echo-2", "tcp")
		r := denied(t, err, "engineer-evening")
		if r.Rule != policy.RuleDefaultDeny || !strings.Contains(r.Reason, "20:00-22:00 Europe/Berlin") {
			t.Fatalf("denial %+v: want default-deny naming engineer-evening and its window", r)
		}
		g.waitEvent(EventSessionRefused, "alice", "(engineer-evening applies wed 20:00-22:00 Europe/Berlin)")
	})

	t.Run("no grant", func(t *testing.T) {
		_, _, err := tunnel(t, alice, "echo-4", "tcp")
		r := denied(t, err, "no grant names the user or a role of theirs")
		if r.Rule != policy.RuleDefaultDeny {
			t.Fatalf("rule %q, want %s", r.Rule, policy.RuleDefaultDeny)
		}
		g.waitEvent(EventSessionRefused, "alice", "no grant lets alice reach echo-4")
	})

	t.Run("explicit deny wins", func(t *testing.T) {
		_, _, err := tunnel(t, alice, "echo-3", "tcp")
		r := denied(t, err, "an explicit deny wins")
		if r.Rule != "alice-not-echo3" {
			t.Fatalf("rule %q, want alice-not-echo3 (over the allow engineer-echo3)", r.Rule)
		}
		g.waitEvent(EventSessionRefused, "alice", `grant "alice-not-echo3" denies alice`)
	})

	t.Run("window ends during a session", func(t *testing.T) {
		end := at(11, 0)
		setClock(end.Add(-6 * time.Second)) // room for a login and a tunnel on a loaded machine
		res, erin := mustLogin("erin")
		if res.NotAfter.After(end) {
			t.Fatalf("erin's certificate valid until %v, past the end of her window %v", res.NotAfter, end)
		}
		c, r, err := tunnel(t, erin, "echo-1", "tcp")
		if err != nil {
			t.Fatal(err)
		}
		if r.Rule != "erin-short" || !r.UntilTime().Equal(end) {
			t.Fatalf("reply %+v: want rule erin-short until %v", r, end)
		}
		echoRoundTrip(t, c, "before the end")
		waitClosed(t, c, 20*time.Second)
		if closed := gateNow(); closed.Before(end.Add(-50*time.Millisecond)) || closed.After(end.Add(3*time.Second)) {
			t.Errorf("session closed at %v (gate clock), want at the window's end %v", closed, end)
		}
		rec := g.waitEnd(r.Session, EndUntil+`: rule "erin-short" allowed it until `+end.Format(time.RFC3339))
		t.Logf("session end record: %+v", rec)
		for _, e := range g.entries() {
			if s, ok := e.Body.(audit.SessionStart); ok && s.SessionID == r.Session && !s.ValidUntil.Time().Equal(end) {
				t.Errorf("session start record valid until %v, want %v", s.ValidUntil.Time(), end)
			}
		}
		// After the window: the certificate has ended with it.
		_, _, err = tunnel(t, erin, "echo-1", "tcp")
		denied(t, err, "expired")
	})

	t.Run("a grant that takes over at a window's end carries the session on", func(t *testing.T) {
		edge := at(11, 30) // kate-morning ends, kate-midday begins, until 13:00
		setClock(edge.Add(-6 * time.Second))
		res, kate := mustLogin("kate")
		if !res.NotAfter.Equal(at(13, 0)) {
			t.Fatalf("kate's certificate valid until %v, want %v", res.NotAfter, at(13, 0))
		}
		c, r, err := tunnel(t, kate, "echo-1", "tcp")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if r.Rule != "kate-morning" || !r.UntilTime().Equal(at(13, 0)) {
			t.Fatalf("reply %+v: want rule kate-morning, the session until 13:00 (kate-midday carries it on)", r)
		}
		echoRoundTrip(t, c, "before the edge")
		for gateNow().Before(edge.Add(time.Second)) {
			time.Sleep(50 * time.Millisecond)
		}
		ev := g.waitEvent(EventSessionHandover, "kate", `grant "kate-morning" ended at `+edge.Format(time.RFC3339)+`; grant "kate-midday" takes the session over`)
		if ev.SessionID != r.Session || ev.Rule != "kate-midday" || ev.Asset != "echo-1" {
			t.Errorf("handover event %+v: want session %s, rule kate-midday, asset echo-1", ev, r.Session)
		}
		echoRoundTrip(t, c, "after the edge")
		var live []SessionInfo
		for _, x := range g.srv.Sessions() {
			if x.ID == r.Session {
				live = append(live, x)
			}
		}
		if len(live) != 1 || live[0].Rule != "kate-midday" || !live[0].Until.Equal(at(13, 0)) {
			t.Errorf("live session %+v: want it governed by kate-midday until 13:00", live)
		}
		// The end of the run ends it, naming the grant in force then.
		setClock(at(13, 0).Add(-2 * time.Second))
		waitClosed(t, c, 20*time.Second)
		g.waitEnd(r.Session, EndUntil+`: rule "kate-midday" allowed it until `+at(13, 0).Format(time.RFC3339))
	})
}
