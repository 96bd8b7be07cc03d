// Package overlayd is the main of otgate-overlay, the overlay service: it
// gives every asset of the applied policy a stable overlay address, keeps
// the overlay interface carrying exactly those addresses, and serves the
// allocation table on a unix socket (CBOR). SIGHUP re-reads the policy at
// once; a changed policy file is also noticed by itself.
package overlayd

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/internal/sandbox"
	"github.com/otgate/otgate/services/overlay"
	"github.com/otgate/otgate/services/overlay/alloc"
	"github.com/otgate/otgate/site"
)

func Main() {
	policy := flag.String("policy", filepath.Join(site.DefaultStateDir, site.AppliedFile), "compiled policy to serve")
	state := flag.String("state", alloc.DefaultStatePath, "allocator state file")
	sock := flag.String("socket", overlay.DefaultSocket, "unix socket serving the allocation table (CBOR)")
	link := flag.String("link", overlay.DefaultLink, "overlay interface name")
	kind := flag.String("link-kind", string(overlay.KindDummy), "overlay interface kind: dummy, or veth for kernels without dummy")
	poll := flag.Duration("poll", 2*time.Second, "how often to check the policy file for a change")
	repair := flag.Duration("repair", 30*time.Second, "how often to re-check the interface for drift (the interface deleted, set down or losing an address is repaired on the kernel's event, sooner)")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "otgate-overlay: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	// Root for its files; of root's capabilities it keeps CAP_NET_ADMIN
	// alone, for the overlay interface and its addresses
	// (internal/sandbox).
	if err := sandbox.LockDown(unix.CAP_NET_ADMIN); err != nil {
		fmt.Fprintf(os.Stderr, "otgate-overlay: %v\n", err)
		os.Exit(1)
	}
	// Confined to its files (confinement): a compromised overlay cannot
	// read another service's state or the TPM, nor change the policy,
	// /etc or the binaries.
	files, err := confine(*policy, *state, *sock)
	if err != nil {
		fmt.Fprintf(os.Stderr, "otgate-overlay: %v: refusing to run unconfined\n", err)
		os.Exit(1)
	}
	logger := log.New(os.Stderr, "", log.LstdFlags)
	logger.Printf("overlay: files confined: %s", files)

	// Routing netlink only: a handle with no families named opens an XFRM
	// socket too, which needs the xfrm_user module for nothing.
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		logger.Fatalf("overlay: netlink: %v", err)
	}
	defer h.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()

	svc := &overlay.Service{
		PolicyPath: *policy,
		StatePath:  *state,
		SocketPath: *sock,
		Link:       *link,
		LinkKind:   overlay.LinkKind(*kind),
		Handle:     h,
		Poll:       *poll,
		Repair:     *repair,
		Logf:       logger.Printf,
	}
	if err := svc.Run(ctx, reload); err != nil {
		logger.Printf("%v", err)
		os.Exit(1)
	}
	logger.Printf("overlay: stopped (addresses stay on %s)", *link)
}
