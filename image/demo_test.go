package image

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/services/proxy/auth/totp"
	"github.com/otgate/otgate/site"
)

// The proxy row: unprivileged, only CAP_NET_RAW (and
// CAP_NET_BIND_SERVICE, which it drops once its listeners are bound),
// critical, never before the trust gate and the segment ruleset.
func TestProxyRow(t *testing.T) {
	var proxy *bootcfg.Service
	for i := range ProductionServices {
		if s := &ProductionServices[i].Service; s.Name == "proxy" {
			proxy = s
		}
	}
	if proxy == nil {
		t.Fatal("no proxy row in ProductionServices")
	}
	if proxy.UID != 101 || proxy.GID != 101 || !slices.Equal(proxy.Capabilities, []string{"CAP_NET_RAW", "CAP_NET_BIND_SERVICE"}) || !proxy.Critical {
		t.Errorf("proxy row %+v: want uid/gid 101, only CAP_NET_RAW and CAP_NET_BIND_SERVICE, critical", *proxy)
	}
	for _, d := range []string{"trust", "segment"} {
		if !slices.Contains(proxy.DependsOn, d) {
			t.Errorf("proxy does not depend on %s: %v", d, proxy.DependsOn)
		}
	}
	// Init hands it its directories and read access to the policy and
	// the overlay endpoint table.
	if want := []string{"/perm/proxy", "/perm/audit", "/run/otgate/proxy"}; !slices.Equal(proxy.OwnedDirs, want) {
		t.Errorf("proxy owned directories %v, want %v", proxy.OwnedDirs, want)
	}
	if want := []string{"/perm/policy", "/perm/overlay"}; !slices.Equal(proxy.GroupReadDirs, want) {
		t.Errorf("proxy group-readable directories %v, want %v", proxy.GroupReadDirs, want)
	}
	cfg := &bootcfg.Config{Services: nil}
	for _, r := range append(append([]ServiceRow(nil), ProductionServices...), DemoServices...) {
		cfg.Services = append(cfg.Services, r.Service)
	}
	if err := cfg.Validate(nil); err != nil {
		t.Fatal(err)
	}
}

// The demo tree: the demo site replaces the default policy, its grant is
// open around the clock, and the credentials written into the image are
// the ones the host reads back.
func TestDemoTree(t *testing.T) {
	tree := newFileTree()
	if err := tree.addData(defaultPolicyPath, 0o644, []byte("default"), "test"); err != nil {
		t.Fatal(err)
	}
	cr, err := addDemo(tree, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a, err := site.Decode(tree.entries[defaultPolicyPath].data)
	if err != nil {
		t.Fatalf("demo policy: %v", err)
	}
	g, ok := a.Site.Access.GrantByName("engineer-demo")
	if !ok || len(g.Windows) != 0 || len(g.Dates) != 0 {
		t.Fatalf("demo grant %+v: want engineer-demo without time windows", g)
	}
	if got := strings.TrimSpace(string(tree.entries[demoPasswordFile].data)); got != cr.Password || len(got) < 12 {
		t.Errorf("password file %q, credentials %q", got, cr.Password)
	}
	if tree.entries[demoSecretFile].perm != 0o600 || tree.entries[demoPasswordFile].perm != 0o600 {
		t.Error("demo secrets are not 0600 in the image")
	}
	if s, err := totp.DecodeSecret(cr.Secret); err != nil || len(s) < totp.MinSecretLen {
		t.Errorf("TOTP secret %q: %v", cr.Secret, err)
	}
	dir := t.TempDir()
	if err := writeDemoCredentials(dir, cr); err != nil {
		t.Fatal(err)
	}
	back, err := ReadDemoCredentials(dir)
	if err != nil || *back != *cr {
		t.Fatalf("read back %+v, %v; want %+v", back, err, cr)
	}
	if _, err := ReadDemoCredentials(t.TempDir()); err == nil {
		t.Fatal("credentials read from an image without them")
	}
	// Each demo build gets its own credentials.
	if cr2, _ := newDemoCredentials(); cr2.Secret == cr.Secret || cr2.Password == cr.Password {
		t.Fatal("two demo builds share credentials")
	}
}
