package auth

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Unlocking a user who is neither locked nor has failed logins to clear
// is an error naming the user, and changes nothing: neither the store
// file nor the audit events (an "unlocked" event for a user who was not
// locked tells the auditor of an unlock that did not happen). A user
// with failures but no lock, and a locked one, are unlocked.
func TestUnlockNotLocked(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxFailures = 3 })
	secret := e.add("alice")
	before, err := os.ReadFile(e.s.Path())
	if err != nil {
		t.Fatal(err)
	}
	events := len(e.ev.kinds())
	err = e.s.Unlock("alice")
	if !errors.Is(err, ErrNotLocked) || !strings.Contains(err.Error(), `"alice"`) {
		t.Fatalf("unlock of a user who is not locked: %v, want ErrNotLocked naming alice", err)
	}
	after, _ := os.ReadFile(e.s.Path())
	if !bytes.Equal(before, after) {
		t.Error("the refused unlock rewrote the store file")
	}
	if k := e.ev.kinds(); len(k) != events {
		t.Errorf("the refused unlock emitted events %v", k[events:])
	}

	// One failure, no lock: the unlock clears the count.
	e.mustRefuse("alice", "wrong password!", e.oathtool(secret, 0), srcA, ReasonBadPassword)
	if err := e.s.Unlock("alice"); err != nil {
		t.Fatalf("unlock of a user with a failed login: %v", err)
	}
	if u, _ := e.s.User("alice"); u.Failures != 0 {
		t.Fatalf("after unlock: %+v, want no failures", u)
	}
	// Locked: unlocked.
	for i := range 3 {
		e.clock.Add(time.Minute)
		e.mustRefuse("alice", fmt.Sprintf("wrong password %d", i), e.oathtool(secret, 0), srcA, ReasonBadPassword)
	}
	if u, _ := e.s.User("alice"); !u.Locked {
		t.Fatalf("after 3 failures: %+v, want locked", u)
	}
	if err := e.s.Unlock("alice"); err != nil {
		t.Fatalf("unlock of a locked user: %v", err)
	}
	if err := e.s.Unlock("alice"); !errors.Is(err, ErrNotLocked) {
		t.Fatalf("second unlock: %v, want ErrNotLocked", err)
	}
}

// Concurrent adds through one store lose none of them, in memory or on
// disk (each commit starts from the state the previous one made).
func TestConcurrentAdds(t *testing.T) {
	e := newEnv(t, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			if _, err := e.s.AddUser(fmt.Sprintf("user-%d", i), []byte(testPassword), nil); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(e.s.Users()); n != 8 {
		t.Fatalf("%d users after 8 concurrent adds", n)
	}
	e.restart()
	if n := len(e.s.Users()); n != 8 {
		t.Fatalf("%d users after 8 concurrent adds and a restart", n)
	}
}

// Open creating the store directory fsyncs the parent of every
// directory it made: the first user added is acknowledged only after
// its file and directory are synced, and the store directory's own entry
// must be durable too, or a power cut takes the acknowledged user with
// the directory.
func TestOpenSyncsNewStoreDirectory(t *testing.T) {
	var synced []string
	storeDirSync = func(dir string) error { synced = append(synced, dir); return nil }
	t.Cleanup(func() { storeDirSync = nil })
	base := t.TempDir()
	dir := filepath.Join(base, "perm", "proxy")
	e := newEnv(t, func(c *Config) { c.Dir = dir })
	if want := []string{base, filepath.Join(base, "perm")}; !slices.Equal(synced, want) {
		t.Fatalf("directories synced creating %s: %q, want %q", dir, synced, want)
	}
	e.add("alice")
}
