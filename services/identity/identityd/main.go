// Package identityd is the main of otgate-identity, the gate's identity
// service: it opens (or on first boot creates) the TPM-bound device
// identity, unseals the data key (or reports quarantine), and serves the
// local API on a unix socket to the gate's own services. Run by init; also
// runs on a development host against swtpm (-tpm-socket) or in dev mode
// (-dev).
package identityd

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/ready"
	"github.com/otgate/otgate/services/identity"
	"github.com/otgate/otgate/services/identity/api"
)

func Main() {
	fs := flag.NewFlagSet("otgate-identity", flag.ExitOnError)
	idFlags := identity.RegisterFlags(fs)
	socket := fs.String("socket", api.DefaultSocket, "local API socket")
	gid := fs.Int("socket-gid", -1, "group owning the socket (mode 0660); -1: the process's group")
	allow := fs.String("allow", "0=admin", "uids allowed on the socket and the service each acts as: uid=service,...")
	fs.Parse(os.Args[1:])
	if err := run(idFlags, *socket, *gid, *allow); err != nil {
		fmt.Fprintln(os.Stderr, "identity: FATAL:", err)
		if errors.Is(err, identity.ErrEarlierIdentity) || errors.Is(err, identity.ErrVolatileState) {
			// A restart cannot help (it needs /perm restored or fixed, or
			// a reset): init marks the row failed at once, with the note.
			_ = ready.Status(err.Error())
			os.Exit(bootcfg.ExitNoRestart)
		}
		os.Exit(1)
	}
}

func run(f *identity.Flags, socket string, gid int, allowSpec string) error {
	allow, err := identity.ParseAllow(allowSpec)
	if err != nil {
		return fmt.Errorf("-allow: %w", err)
	}
	cfg, err := f.Config(true, os.Stderr)
	if err != nil {
		return err
	}
	cfg.Service = true // logs, once, that a reset replaced an earlier identity
	id, err := identity.Open(cfg)
	if err != nil {
		return err
	}
	defer id.Close()
	// In quarantine Open has printed one "GATE IN QUARANTINE" console line;
	// the service still starts so init and `otgate identity status` can
	// read the reason and remedy.
	srv, err := identity.Listen(id, identity.ServerConfig{Socket: socket, GID: gid, Allow: allow})
	if err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	if err := ready.Notify(); err != nil {
		fmt.Fprintln(os.Stderr, "identity: notify init:", err)
	}
	fmt.Fprintf(os.Stderr, "identity: serving on %s (started: %s)\n", socket, id.StartupSteps())
	select {
	case s := <-sigs:
		fmt.Fprintf(os.Stderr, "identity: %v, stopping\n", s)
		return srv.Close()
	case err := <-errc:
		return err
	}
}
