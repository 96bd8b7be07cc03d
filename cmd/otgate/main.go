// Command otgate is the client and admin CLI of the otgate access gate.
//
// Each subcommand lives in its own file and registers itself with
// register; main only dispatches. Called by a service's name (the
// appliance's /bin/otgate-segment, ... links), it runs that service
// instead (serviceMains).
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
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

func usage() {
	fmt.Fprintln(os.Stderr, "usage: otgate <command> [arguments]\n\ncommands:")
	var names []string
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-12s %s\n", n, commands[n].summary)
	}
}

func main() {
	if run, ok := serviceMains[filepath.Base(os.Args[0])]; ok {
		run()
		return
	}
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		os.Exit(2)
	}
	c, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "otgate: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err := c.run(os.Args[2:]); err != nil {
		msg := err.Error()
		if !strings.HasPrefix(msg, "otgate") {
			msg = "otgate " + c.name + ": " + msg
		}
		fmt.Fprintln(os.Stderr, msg)
		os.Exit(1)
	}
}
