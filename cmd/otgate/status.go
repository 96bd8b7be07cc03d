//go:build linux

package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/initstatus"
)

func init() {
	register(command{name: "status", summary: "show init's status on the device (services, /perm, watchdog)", run: runStatus})
}

func runStatus(args []string) error {
	fs := flag.NewFlagSet("otgate status", flag.ContinueOnError)
	socket := fs.String("socket", bootcfg.StatusSocket, "init's status socket")
	asJSON := fs.Bool("json", false, "print the status as JSON")
	showLog := fs.Bool("log", false, "print init's recent log lines instead")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c, err := initstatus.Dial(*socket)
	if err != nil {
		return err
	}
	if *showLog {
		lines, err := c.Log()
		if err != nil {
			return err
		}
		for _, l := range lines {
			fmt.Println(l)
		}
		return nil
	}
	st, err := c.Status()
	if err != nil {
		return err
	}
	if *asJSON {
		e := json.NewEncoder(os.Stdout)
		e.SetIndent("", "  ")
		return e.Encode(st)
	}
	return initstatus.WriteTable(os.Stdout, st)
}
