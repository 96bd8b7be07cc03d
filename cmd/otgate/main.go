// Command otgate is the client and admin CLI of the otgate access gate.
//
// Each subcommand lives in its own file and registers itself with
// register; main only dispatches. Called by a service's name (the
// appliance's /bin/otgate-segment, ... links), it runs that service
// instead (serviceMains).
//
// Exit status, the same for every command so that scripts can rely on
// it: 0 done (help asked for included), 1 failed (for status: the gate is
// not healthy), 2 a command line the command cannot run (a usage line is
// printed and nothing is changed).
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// Exit statuses (see the package comment).
const (
	exitFailure = 1
	exitUsage   = 2
)

// command is one subcommand: otgate <name> [args].
type command struct {
	name    string
	summary string
	run     func(args []string) error
}

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("otgate: duplicate command " + c.name)
	}
	commands[c.name] = c
}

// usageError is a command line a command cannot run (unknown subcommand
// or flag, missing or extra argument, a flag value out of range): main
// exits with exitUsage instead of exitFailure.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef is a usageError.
func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// parseInterspersed parses args with fs where flags may come before,
// between and after the positional arguments (`otgate time step -wait
// 5s`), and returns the positional arguments in order.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for len(args) > 0 {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return pos, nil
}

// parseFlags parses args with fs: an unknown flag or a bad value is a
// usageError carrying the flag set's usage (printed once, by main), -h is
// flag.ErrHelp once the usage is printed (main exits 0).
func parseFlags(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	err := fs.Parse(args)
	fs.SetOutput(out)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		io.Copy(out, &buf)
		return err
	}
	// The flag set printed the error, then its usage.
	usage := strings.TrimPrefix(buf.String(), err.Error()+"\n")
	return usageError{fmt.Errorf("%w\n%s", err, strings.TrimRight(usage, "\n"))}
}

// socketError says what an operator can do when service's socket could
// not be used: nothing there or nobody listening (the service is not
// running, or this is not the gate), or root only. Other errors are
// returned as they are.
func socketError(err error, service, socket string) error {
	switch {
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%s's socket %s is root only (you are uid %d): run this as root on the gate", service, socket, os.Geteuid())
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s is not running: no socket at %s (on the gate, see `otgate status`; elsewhere, name the socket with -socket)", service, socket)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%s is not running: nothing listens on %s (see `otgate status`)", service, socket)
	}
	return err
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: otgate <command> [arguments]\n       otgate help <command>   (or otgate <command> -h): the command's own usage\n\ncommands:")
	var names []string
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nexit status: 0 done, 1 failed (status: the gate is not healthy), 2 bad command line")
}

func main() {
	if run, ok := serviceMains[filepath.Base(os.Args[0])]; ok {
		run()
		return
	}
	os.Exit(dispatch(os.Args[1:]))
}

// dispatch runs the command args name and returns the exit status.
func dispatch(args []string) int {
	if len(args) == 0 {
		usage(os.Stderr)
		return exitUsage
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) == 1 {
			usage(os.Stdout)
			return 0
		}
		if _, ok := commands[args[1]]; !ok || len(args) > 2 {
			fmt.Fprintf(os.Stderr, "otgate help: unknown command %q\n", strings.Join(args[1:], " "))
			usage(os.Stderr)
			return exitUsage
		}
		args = []string{args[1], "-h"} // otgate help site: otgate site -h
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "otgate: unknown command %q\n", args[0])
		usage(os.Stderr)
		return exitUsage
	}
	err := c.run(args[1:])
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) { // -h: the command printed its usage
		return 0
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "otgate") {
		msg = "otgate " + c.name + ": " + msg
	}
	fmt.Fprintln(os.Stderr, msg)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFailure
}
