//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/initstatus"
)

func init() {
	register(command{name: "status", summary: "show init's status on the device (services, /perm, watchdog); exit 1 when not healthy", run: runStatus})
}

const statusUsage = `usage: otgate status [-socket PATH] [-json | -log]

Prints init's view of the gate: boot, /perm, watchdog and one row a
service. Exits 1 when the gate is not healthy (not ready, a boot config or
firewall error, a service failed, unhealthy or restarting, the watchdog not
petted), after printing the status and, on standard error, what is wrong:
monitoring scripts can rely on the exit status.`

func runStatus(args []string) error {
	fs := flag.NewFlagSet("otgate status", flag.ContinueOnError)
	socket := fs.String("socket", bootcfg.StatusSocket, "init's status socket")
	asJSON := fs.Bool("json", false, "print the status as JSON")
	showLog := fs.Bool("log", false, "print init's recent log lines instead")
	fs.Usage = func() { fmt.Fprintf(fs.Output(), "%s\n\nflags:\n", statusUsage); fs.PrintDefaults() }
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q\n%s", fs.Arg(0), statusUsage)
	}
	if *asJSON && *showLog {
		return usagef("-json and -log: give one\n%s", statusUsage)
	}
	c, err := initstatus.Dial(*socket)
	if err != nil {
		return initSocketError(err, *socket)
	}
	if *showLog {
		lines, err := c.Log()
		if err != nil {
			return initSocketError(err, *socket)
		}
		for _, l := range lines {
			fmt.Println(l)
		}
		return nil
	}
	st, err := c.Status()
	if err != nil {
		return initSocketError(err, *socket)
	}
	if *asJSON {
		e := json.NewEncoder(os.Stdout)
		e.SetIndent("", "  ")
		if err := e.Encode(st); err != nil {
			return err
		}
	} else if err := initstatus.WriteTable(os.Stdout, st); err != nil {
		return err
	}
	if bad := unhealthy(st); len(bad) > 0 {
		return fmt.Errorf("the gate is NOT healthy: %s", strings.Join(bad, "; "))
	}
	return nil
}

// initSocketError is socketError for init's status socket: without it
// this is not a running gate.
func initSocketError(err error, socket string) error {
	switch {
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("init's status socket %s is root only (you are uid %d): run this as root on the gate", socket, os.Geteuid())
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("init does not answer on %s: this is not a running gate (init, PID 1 of the gate, serves that socket), or name the socket with -socket", socket)
	}
	return err
}

// unhealthy lists what is wrong with the gate st describes; none when it
// is healthy.
func unhealthy(st *initstatus.Status) []string {
	var bad []string
	if st.ConfigError != "" {
		bad = append(bad, "boot config error: "+st.ConfigError)
	}
	if st.FirewallError != "" {
		bad = append(bad, "firewall error: "+st.FirewallError)
	}
	if !st.Ready {
		bad = append(bad, "not ready (a critical service has not been ready yet)")
	}
	for _, sv := range st.Services {
		switch sv.State {
		case initstatus.StateFailed, initstatus.StateUnhealthy, initstatus.StateBackoff:
			s := sv.Name + " " + sv.State
			if sv.Reason != "" {
				s += " (" + sv.Reason + ")"
			}
			bad = append(bad, s)
		}
	}
	if w := st.Watchdog; w.Device != "" && !w.Petting {
		s := "watchdog " + w.Device + " NOT petted"
		if w.Note != "" {
			s += " (" + w.Note + ")"
		}
		bad = append(bad, s)
	}
	return bad
}
