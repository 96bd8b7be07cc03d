package identity

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otgate/otgate/services/identity/api"
)

// TestSealLimits: through the socket, a secret of MaxSecretSize bytes is
// sealed and one byte more is refused naming the limit; a caller holding
// MaxSecretsPerCaller secrets may replace them but not add another; the
// refusals write nothing. A request near the frame limit (api.MaxMessage)
// gets the size limit's answer, not a broken connection.
func TestSealLimits(t *testing.T) {
	_, opener := startTPM(t)
	cfg := testConfig(t, opener)
	id, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()
	sock := serve(t, id, -1, map[uint32]string{uint32(os.Getuid()): "proxy"})
	c, err := api.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir := filepath.Join(cfg.StateDir, SecretsDir, "proxy")
	refused := func(err error, limit string) {
		t.Helper()
		if !errors.Is(err, &api.Error{Code: api.CodeBadRequest}) || !strings.Contains(err.Error(), limit) {
			t.Fatalf("got %v, want bad-request naming %s", err, limit)
		}
	}

	// Size: at the limit, and past it (as a new secret and as a
	// replacement: the stored one is kept).
	big := bytes.Repeat([]byte{0xa5}, MaxSecretSize)
	if err := c.Seal("big", big); err != nil {
		t.Fatalf("a secret of exactly MaxSecretSize: %v", err)
	}
	if got, err := c.Unseal("big"); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("unseal of the largest secret: %d bytes, %v", len(got), err)
	}
	before := snapshot(t, cfg.StateDir)
	err = c.Seal("bigger", append(big, 0))
	refused(err, fmt.Sprintf("%d bytes, over the limit of %d bytes (MaxSecretSize)", MaxSecretSize+1, MaxSecretSize))
	refused(c.Seal("big", append(big, 0)), "MaxSecretSize")
	refused(c.Seal("huge", make([]byte, api.MaxMessage-64)), "MaxSecretSize")
	if snapshot(t, cfg.StateDir) != before {
		t.Fatal("a refused seal changed the state")
	}
	if _, err := c.Unseal("bigger"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("the refused secret: %v, want not-found", err)
	}

	// Count: fill up to the limit ("big" is one), replace, refuse one more.
	for i := 1; i < MaxSecretsPerCaller; i++ {
		if err := c.Seal(fmt.Sprintf("s%d", i), []byte{byte(i)}); err != nil {
			t.Fatalf("secret %d of %d: %v", i+1, MaxSecretsPerCaller, err)
		}
	}
	if err := c.Seal("s1", []byte("replaced")); err != nil {
		t.Fatalf("replacing a secret at the count limit: %v", err)
	}
	before = snapshot(t, cfg.StateDir)
	refused(c.Seal("one-more", []byte("x")), fmt.Sprintf("proxy already holds %d secrets, the limit (MaxSecretsPerCaller)", MaxSecretsPerCaller))
	if snapshot(t, cfg.StateDir) != before {
		t.Fatal("a refused seal changed the state")
	}
	if n, err := countSecrets(dir); err != nil || n != MaxSecretsPerCaller {
		t.Fatalf("%d secrets stored (%v), want %d", n, err, MaxSecretsPerCaller)
	}
	// The limit is per caller: another service still seals.
	if err := id.SealSecret("admin", "one-more", []byte("x")); err != nil {
		t.Fatalf("another caller's first secret: %v", err)
	}
	// The connection is still usable after the refusals.
	if got, err := c.Unseal("s1"); err != nil || string(got) != "replaced" {
		t.Fatalf("unseal after the refusals: %q, %v", got, err)
	}
}
