package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"
)

func init() {
	register(command{name: "assets", summary: "list the assets you may reach now, and until when",
		run: func(args []string) error { return runAssets(args, os.Stdout) }})
}

func runAssets(args []string, out io.Writer) error {
	s, err := openProfile("assets", args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rsp, err := s.Assets(ctx)
	if ge, ok := refusedCredential(err); ok {
		return credentialRefused(s, ge)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s at %s, certificate valid until %s\n", rsp.User, s.Profile.Gate, time.Unix(rsp.NotAfter, 0).Local().Format("2006-01-02 15:04:05"))
	if len(rsp.Assets) == 0 {
		fmt.Fprintln(out, "no asset is open to you now")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ASSET\tPROTOCOL\tUNTIL\tRULE\tMODBUS/TCP SECURITY")
	for _, a := range rsp.Assets {
		until := "-"
		if a.Until != 0 {
			until = a.UntilTime().Local().Format("2006-01-02 15:04:05")
		}
		endpoint := "-"
		if a.Endpoint != "" {
			endpoint = a.Endpoint
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Name, a.Protocol, until, a.Rule, endpoint)
	}
	return tw.Flush()
}
