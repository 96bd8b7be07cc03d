package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/otgate/otgate/services/proxy/adminapi"
)

func init() {
	register(command{name: "sessions", summary: "on the gate: list live sessions, revoke, reload the policy, unlock (root)",
		run: func(args []string) error { return runSessions(args, os.Stdout) }})
}

const sessionsUsage = `usage: otgate sessions [--socket PATH] [list]
       otgate sessions revoke-user USER [--reason TEXT]
       otgate sessions revoke-serial USER SERIAL [--reason TEXT]
       otgate sessions reload
       otgate sessions unlock USER`

func runSessions(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("otgate sessions", flag.ContinueOnError)
	socket := fs.String("socket", adminapi.DefaultSocket, "the proxy's admin socket")
	reason := fs.String("reason", "", "why (recorded in the audit log)")
	// flags may come before or after the operation
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	op := "list"
	if len(pos) > 0 {
		op, pos = pos[0], pos[1:]
	}
	want := map[string]int{"list": 0, "revoke-user": 1, "revoke-serial": 2, "reload": 0, "unlock": 1}
	n, ok := want[op]
	if !ok || len(pos) != n {
		return errors.New(sessionsUsage)
	}
	var req adminapi.Request
	switch op {
	case "list":
		req = adminapi.Request{Op: adminapi.OpSessions}
	case "revoke-user":
		req = adminapi.Request{Op: adminapi.OpRevokeUser, User: pos[0], Reason: *reason}
	case "revoke-serial":
		req = adminapi.Request{Op: adminapi.OpRevokeSerial, User: pos[0], Serial: pos[1], Reason: *reason}
	case "reload":
		req = adminapi.Request{Op: adminapi.OpReload}
	case "unlock":
		req = adminapi.Request{Op: adminapi.OpUnlock, User: pos[0]}
	}
	rsp, err := adminapi.Call(*socket, req)
	if err != nil {
		return err
	}
	switch op {
	case "list":
		printSessions(out, rsp.Sessions)
	case "unlock":
		fmt.Fprintf(out, "unlocked %s\n", pos[0])
	case "reload":
		fmt.Fprintf(out, "policy reloaded; %d live sessions ended as no longer allowed\n", rsp.Ended)
	default:
		fmt.Fprintf(out, "revoked; %d live sessions ended\n", rsp.Ended)
	}
	return nil
}

func printSessions(out io.Writer, ss []adminapi.Session) {
	if len(ss) == 0 {
		fmt.Fprintln(out, "no live sessions")
		return
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tUSER\tASSET\tPROTOCOL\tSOURCE\tRULE\tSTARTED\tUNTIL\tTO ASSET\tTO CLIENT\tIDLE")
	for _, s := range ss {
		until := "-"
		if s.Until != 0 {
			until = time.Unix(0, s.Until).Local().Format("15:04:05")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", s.ID, s.User, s.Asset, s.Protocol, s.Source, s.Rule,
			time.Unix(0, s.Started).Local().Format("15:04:05"), until, s.BytesToAsset, s.BytesToClient,
			time.Duration(s.IdleNanos).Round(time.Second))
	}
	tw.Flush()
}
