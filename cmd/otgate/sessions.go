package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
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
       otgate sessions reload [--reason TEXT]
       otgate sessions unlock USER [--reason TEXT]

Talks to the proxy's admin socket (root only). revoke-user invalidates
every certificate issued to USER so far and ends their live sessions;
revoke-serial one certificate (hex serial, as list shows it) and the
sessions opened with it; reload reads the applied policy again and ends
the sessions it no longer allows; unlock lifts a login lockout. Each is an
"admin" event in the audit log, with --reason. Flags may come before or
after the operation.`

func runSessions(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("otgate sessions", flag.ContinueOnError)
	socket := fs.String("socket", adminapi.DefaultSocket, "the proxy's admin socket")
	reason := fs.String("reason", "", "why (recorded in the audit log; not for list)")
	fs.Usage = func() { fmt.Fprintf(fs.Output(), "%s\n\nflags:\n", sessionsUsage); fs.PrintDefaults() }
	// flags may come before or after the operation
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	op := "list"
	if len(pos) > 0 {
		op, pos = pos[0], pos[1:]
	}
	want := map[string][]string{"list": nil, "revoke-user": {"USER"}, "revoke-serial": {"USER", "SERIAL"}, "reload": nil, "unlock": {"USER"}}
	names, ok := want[op]
	switch {
	case !ok:
		return usagef("unknown operation %q\n%s", op, sessionsUsage)
	case len(pos) < len(names):
		return usagef("%s: missing %s\n%s", op, strings.Join(names[len(pos):], " "), sessionsUsage)
	case len(pos) > len(names):
		return usagef("%s: unexpected argument %q\n%s", op, pos[len(names)], sessionsUsage)
	case op == "list" && *reason != "":
		return usagef("list: --reason is for the operations that change something\n%s", sessionsUsage)
	}
	for i, p := range pos {
		if strings.TrimSpace(p) == "" {
			return usagef("%s: empty %s\n%s", op, names[i], sessionsUsage)
		}
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
		req = adminapi.Request{Op: adminapi.OpReload, Reason: *reason}
	case "unlock":
		req = adminapi.Request{Op: adminapi.OpUnlock, User: pos[0], Reason: *reason}
	}
	rsp, err := adminapi.Call(*socket, req)
	// A call made whose outcome the audit log could not record: its
	// result is said, then the error.
	var unrecorded *adminapi.UnrecordedError
	if err != nil && !errors.As(err, &unrecorded) {
		return socketError(err, "the proxy", *socket)
	}
	switch op {
	case "list":
		printSessions(out, rsp.Sessions)
	case "unlock":
		fmt.Fprintf(out, "unlocked %s: they may log in again\n", pos[0])
	case "reload":
		src := ""
		if rsp.Policy != "" {
			src = " from " + rsp.Policy
		}
		fmt.Fprintf(out, "policy reloaded%s; %s\n", src, rsp.ReloadSummary())
	case "revoke-user":
		fmt.Fprintf(out, "revoked every certificate of %s (they must log in again); %d live sessions ended\n", pos[0], rsp.Ended)
	default:
		fmt.Fprintf(out, "revoked certificate %s of %s; %d live sessions ended\n", pos[1], pos[0], rsp.Ended)
	}
	return err
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
		rule := s.Rule
		if s.Monitor {
			rule += " (monitor)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", s.ID, s.User, s.Asset, s.Protocol, s.Source, rule,
			time.Unix(0, s.Started).Local().Format("15:04:05"), until, s.BytesToAsset, s.BytesToClient,
			time.Duration(s.IdleNanos).Round(time.Second))
	}
	tw.Flush()
}
