package proxy

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/otgate/otgate/client"
)

// A first login that nothing vouches for (no pin, no CA, no
// TrustFirstUse) sends nothing: the client learns the gate's key and
// returns it in a *client.FirstUseError; the code it held is still
// unused, so nothing reached the gate's login. With the key as the pin
// the same code logs in, and a pin of another key is refused before the
// credentials go out.
func TestLoginWithoutPinSendsNothing(t *testing.T) {
	l := newLab(t)
	g := newGate(t, l)
	g.setGrants(grant{rule: "alice-echo", user: "alice", asset: "echo-1", protocol: "tcp"})
	secret := g.enrol("alice")
	code := oathtool(t, secret)
	dir := filepath.Join(g.dir, "client-alice")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := client.LoginOptions{Gate: "otgate://" + g.addr, User: "alice", Password: "correct horse battery", Code: code, Dir: dir}

	_, err := client.Login(ctx, opts)
	var first *client.FirstUseError
	if !errors.As(err, &first) || first.Fingerprint != g.keyPin(t) || first.Gate != g.addr {
		t.Fatalf("first login without a pin: %v, want a FirstUseError naming key %s", err, g.keyPin(t))
	}
	if _, err := client.LoadProfile(dir); !errors.Is(err, client.ErrNoProfile) {
		t.Fatalf("a refused first login stored a profile: %v", err)
	}

	wrong := opts
	wrong.Pin = "ab" + g.keyPin(t)[2:]
	if wrong.Pin == g.keyPin(t) {
		wrong.Pin = "cd" + g.keyPin(t)[2:]
	}
	if _, err := client.Login(ctx, wrong); err == nil {
		t.Fatal("a login pinned to another key succeeded")
	}

	opts.Pin = g.keyPin(t)
	res, err := client.Login(ctx, opts) // the same code: it was never sent
	if err != nil {
		t.Fatalf("login with the gate's key as the pin and the unused code: %v", err)
	}
	if res.Fingerprint != g.keyPin(t) || res.FirstUse {
		t.Fatalf("login result %+v, want pin %s, not first use", res, g.keyPin(t))
	}
	if p, err := client.LoadProfile(dir); err != nil || p.Pin != g.keyPin(t) {
		t.Fatalf("stored profile %+v, %v; want the pin", p, err)
	}
}
