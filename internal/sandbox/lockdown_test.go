//go:build linux

package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// lockDownChild locks itself down keeping CAP_NET_BIND_SERVICE and
// reports its effective capabilities and what it can still do to the
// process named by otherPidEnv.
func lockDownChild() {
	if err := LockDown(unix.CAP_NET_BIND_SERVICE); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	other, _ := strconv.Atoi(os.Getenv(otherPidEnv))
	rep := map[string]string{}
	c, err := threadCaps("self")
	if err != nil {
		rep["caps"] = "error: " + err.Error()
	} else {
		rep["caps"] = fmt.Sprintf("eff %x prm %x inh %x amb %x no_new_privs %v", c.eff, c.prm, c.inh, c.amb, c.noNewPrivs)
	}
	errText := func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	}
	rep["signal another root process"] = errText(unix.Kill(other, 0))
	rep["start a process"] = errText(exec.Command("/bin/true").Run())
	json.NewEncoder(os.Stdout).Encode(rep)
	os.Exit(0)
}

// LockDown is both steps every root service starts with: the
// capabilities it keeps and nothing else, and no reach into another
// process.
func TestLockDown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it limits a root process")
	}
	sleeper := startSleeper(t)
	got := otherProbes(t, withoutCgo(t), "lockdown", sleeper)
	want := map[string]string{
		"caps":                        fmt.Sprintf("eff %x prm %x inh 0 amb 0 no_new_privs true", 1<<unix.CAP_NET_BIND_SERVICE, 1<<unix.CAP_NET_BIND_SERVICE),
		"signal another root process": unix.EPERM.Error(),
		"start a process":             "fork/exec /bin/true: " + unix.EPERM.Error(),
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %q, want %q", k, got[k], w)
		}
	}
}
