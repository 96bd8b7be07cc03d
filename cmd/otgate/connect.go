package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
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
	listen := fs.String("listen", "127.0.0.1:0", "local loopback address to listen on (127.0.0.1, [::1] or localhost, and a port)")
	protocol := fs.String("protocol", "", "protocol to ask for (default: the asset's only protocol open to you)")
	dir := profileDirFlag(fs)
	// Accept the asset before or after the flags.
	var asset string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		asset, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if asset == "" && fs.NArg() == 1 {
		asset = fs.Arg(0)
	} else if fs.NArg() != 0 || asset == "" {
		return usagef("usage: otgate connect <asset> [--listen 127.0.0.1:port] [--protocol NAME]")
	}
	if err := checkLoopbackListen(*listen); err != nil {
		return err
	}
	s, err := openSession(*dir)
	if err != nil {
		return err
	}
	if end := s.NotAfter(); time.Now().After(end) {
		return fmt.Errorf("your credential for %s expired at %s: log in again with %s", s.Profile.Gate, end.Local().Format("2006-01-02 15:04:05 MST"), relogin(s))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *protocol == "" {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		rsp, err := s.Assets(actx)
		cancel()
		if ge, ok := refusedCredential(err); ok {
			return credentialRefused(s, ge)
		}
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
	if a, ok := ln.Addr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
		ln.Close()
		return fmt.Errorf("--listen %s: bound %s, not a loopback address: %s", *listen, ln.Addr(), notLoopback)
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
				if tunnelNeedsLogin(s, err) {
					say("%s: %v: log in again with %s (this connect takes the new credential for new connections)", local, err, relogin(s))
					return
				}
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
		OnAcceptError: func(err error, wait time.Duration) {
			say("%v: accepting again in %v", err, wait)
		},
	}
	n := &connectNotices{asset: asset, w: errOut, mu: &mu, dir: *dir}
	f.OnWarn, f.OnNotice, f.OnNoticeStream = n.warn, n.notice, n.stream
	f.FollowLogin, f.OnCredential = true, n.credential
	return f.Serve(ctx, ln)
}

// tunnelNeedsLogin says whether a refused tunnel needs a new login: the
// gate refused the credential (expired, or revoked by a logout or an
// administrator: the gate's reason starts "certificate refused", see
// proxy's verifyClient), or it has expired by this computer's clock.
func tunnelNeedsLogin(s *client.Session, err error) bool {
	var d *client.DeniedError
	if !errors.As(err, &d) {
		return false
	}
	return strings.HasPrefix(d.Reply.Reason, "certificate refused") || time.Now().After(s.NotAfter())
}

// notLoopback says why connect listens on loopback only.
const notLoopback = "every connection to the listener becomes a tunnel under your credential, " +
	"so anyone who could reach it would reach the asset as you; give 127.0.0.1:PORT, [::1]:PORT or localhost:PORT"

// checkLoopbackListen refuses a --listen address whose host is not a
// loopback address (an empty host listens on every interface).
func checkLoopbackListen(listen string) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %v (want 127.0.0.1:PORT)", listen, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Unmap().IsLoopback() {
		return nil
	}
	if host == "" {
		host = "every interface"
	}
	return fmt.Errorf("--listen %s: %s is not a loopback address: %s", listen, host, notLoopback)
}
