package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/services/proxy/wire"
)

func init() {
	register(command{name: "connect", summary: "forward a local port to an asset through the gate (connect <asset>)",
		run: func(args []string) error { return runConnect(args, os.Stdout, os.Stderr) }})
}

func runConnect(args []string, out, errOut io.Writer) error {
	fs := flag.NewFlagSet("otgate connect", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "local address to listen on")
	protocol := fs.String("protocol", "", "protocol to ask for (default: the asset's only protocol open to you)")
	dir := profileDirFlag(fs)
	// Accept the asset before or after the flags.
	var asset string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		asset, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if asset == "" && fs.NArg() == 1 {
		asset = fs.Arg(0)
	} else if fs.NArg() != 0 || asset == "" {
		return errors.New("usage: otgate connect <asset> [--listen 127.0.0.1:port] [--protocol NAME]")
	}
	s, err := client.Open(*dir)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *protocol == "" {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		rsp, err := s.Assets(actx)
		cancel()
		if err != nil {
			return err
		}
		var protos []string
		for _, a := range rsp.Assets {
			if a.Name == asset {
				protos = append(protos, a.Protocol)
			}
		}
		sort.Strings(protos)
		switch len(protos) {
		case 0:
			return fmt.Errorf("no grant opens %q to you now (otgate assets lists what is open)", asset)
		case 1:
			*protocol = protos[0]
		default:
			return fmt.Errorf("%q is open to you for %s: choose one with --protocol", asset, strings.Join(protos, ", "))
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	say := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format+"\n", a...)
	}
	say("listening on %s for %s/%s through %s", ln.Addr(), asset, *protocol, s.Profile.Gate)
	f := &client.Forwarder{Session: s, Asset: asset, Protocol: *protocol,
		OnTunnel: func(local net.Addr, r *wire.Reply, err error) {
			if err != nil {
				say("%s: %v", local, err)
				return
			}
			until := "no end set"
			if t := r.UntilTime(); !t.IsZero() {
				until = "until " + t.Local().Format("15:04:05")
			}
			say("%s: session %s allowed by rule %s, %s", local, r.Session, r.Rule, until)
		},
		OnEnd: func(r *wire.Reply) { say("session %s closed", r.Session) },
	}
	n := &connectNotices{asset: asset, w: errOut, mu: &mu}
	f.OnWarn, f.OnNotice, f.OnNoticeStream = n.warn, n.notice, n.stream
	return f.Serve(ctx, ln)
}
