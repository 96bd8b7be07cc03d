//go:build linux

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"syscall"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/initstatus"
	"github.com/otgate/otgate/services/timesync"
)

func init() {
	register(command{name: "time", summary: "on the gate: the clock's state, or approve one step the time service refused (time [step])", run: runTime})
}

const timeUsage = `usage: otgate time [-socket PATH]          the time service's state (its row in otgate status)
       otgate time step [-socket PATH]     approve ONE step of the clock that the time service
                                           refused (root, on the gate)

After its first sync of a boot the time service refuses an offset above its
panic threshold (1000 s): whoever answers on the uplink must not move a
running gate's clock by hours. When the clock really is that far off (a VM
snapshot restored, a host that slept), "otgate time step" approves one step:
the service polls at once and steps the clock by what its servers then say,
logging who approved it. The approval is good for 10 minutes and only while
the service is refusing.

Before its first sync of a boot the service refuses a server whose time is
before the clock floor, the last time the gate knew was right (/perm/timesync/clock),
or whose NTS certificate expired before it; "otgate time step" then lifts the
floor for that first sync, and the clock goes back to what the servers say.`

func runTime(args []string) error {
	fs := flag.NewFlagSet("otgate time", flag.ContinueOnError)
	socket := fs.String("socket", bootcfg.StatusSocket, "init's status socket")
	approval := fs.String("approval", timesync.DefaultApproval, "where the time service looks for an approval")
	wait := fs.Duration("wait", 30*time.Second, "how long step waits for the time service's answer (above 0)")
	fs.Usage = func() { fmt.Fprintf(fs.Output(), "%s\n\nflags:\n", timeUsage); fs.PrintDefaults() }
	// Flags may come before or after step.
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	step := len(pos) > 0 && pos[0] == "step"
	if step {
		pos = pos[1:]
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q (want nothing or step)\n%s", pos[0], timeUsage)
	}
	if *wait <= 0 {
		return usagef("-wait %s: want a duration above 0, e.g. 30s\n%s", *wait, timeUsage)
	}
	if !step {
		sv, err := timesyncRow(*socket)
		if err != nil {
			return err
		}
		fmt.Printf("timesync %s: %s\n", sv.State, sv.Reason)
		return nil
	}
	return timeStep(*socket, *approval, *wait, os.Stdout)
}

func timesyncRow(socket string) (*initstatus.Service, error) {
	c, err := initstatus.Dial(socket)
	if err != nil {
		return nil, initSocketError(err, socket)
	}
	st, err := c.Status()
	if err != nil {
		return nil, initSocketError(err, socket)
	}
	for i := range st.Services {
		if st.Services[i].Name == "timesync" {
			return &st.Services[i], nil
		}
	}
	return nil, errors.New("init runs no timesync service")
}

// timeStep approves one step if the time service is refusing one, makes it
// poll at once (SIGHUP) and waits for its answer.
func timeStep(socket, approval string, wait time.Duration, out io.Writer) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("step is for root on the gate (you are uid %d): run it as root; nothing approved", os.Geteuid())
	}
	sv, err := timesyncRow(socket)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(sv.Reason, "REFUSED") {
		return fmt.Errorf("the time service is not refusing a step (its state: %s): nothing to approve", sv.Reason)
	}
	if sv.PID <= 0 {
		return fmt.Errorf("the time service is not running (%s)", sv.State)
	}
	who := "uid 0"
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	if s := os.Getenv("SUDO_USER"); s != "" {
		who += " (sudo by " + s + ")"
	}
	if err := timesync.WriteStepApproval(approval, who); err != nil {
		return err
	}
	fmt.Fprintf(out, "approved one step (by %s); asking the time service to poll now\n", who)
	if err := syscall.Kill(sv.PID, syscall.SIGHUP); err != nil {
		return fmt.Errorf("signal the time service (pid %d): %w; the approval is written and good for 10 minutes: the service takes it at its next poll", sv.PID, err)
	}
	deadline := time.Now().Add(wait)
	for {
		time.Sleep(200 * time.Millisecond)
		cur, err := timesyncRow(socket)
		if err == nil && cur.Reason != sv.Reason {
			fmt.Fprintf(out, "timesync: %s\n", cur.Reason)
			// Stepped, or slewed when what the servers said after the
			// approval was small (a floor lifted just above them): in sync
			// either way.
			if strings.HasPrefix(cur.Reason, "synchronised:") {
				return nil
			}
			if strings.HasPrefix(cur.Reason, "REFUSED") {
				return errors.New("the time service refused again: the approval was not taken (see otgate status -log)")
			}
			return errors.New("the time service did not step (see its state above); the approval stays good for 10 minutes")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer from the time service in %s; the approval stays good for 10 minutes", wait)
		}
	}
}
