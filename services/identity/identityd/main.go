// Package identityd is the main of otgate-identity, the gate's identity
// service: it opens (or on first boot creates) the TPM-bound device
// identity, unseals the data key (or reports quarantine), and serves the
// local API on a unix socket to the gate's own services. Run by init; also
// runs on a development host against swtpm (-tpm-socket) or in dev mode
// (-dev).
package identityd

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/ready"
	"github.com/otgate/otgate/internal/sandbox"
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
	logOut := io.Writer(os.Stderr)
	if idFlags.DevMode {
		logOut = devModeLog(os.Stderr)
	}
	if err := run(idFlags, logOut, *socket, *gid, *allow); err != nil {
		fmt.Fprintln(logOut, "identity: FATAL:", err)
		if errors.Is(err, identity.ErrEarlierIdentity) || errors.Is(err, identity.ErrVolatileState) {
			// A restart cannot help (it needs /perm restored or fixed, or
			// a reset): init marks the row failed at once, with the note.
			_ = ready.Status(err.Error())
			os.Exit(bootcfg.ExitNoRestart)
		}
		os.Exit(1)
	}
}

// run runs the service; every log line goes to logOut.
func run(f *identity.Flags, logOut io.Writer, socket string, gid int, allowSpec string) error {
	allow, err := identity.ParseAllow(allowSpec)
	if err != nil {
		return fmt.Errorf("-allow: %w", err)
	}
	cfg, err := f.Config(true, logOut)
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
	// The TPM is open and the socket given to its group (CAP_CHOWN):
	// before it answers anyone, the service gives up every capability
	// (root's files and devices stay its own) and any reach into another
	// process (internal/sandbox).
	if err := sandbox.LockDown(); err != nil {
		srv.Close()
		return err
	}
	// From here on it needs no path but its state directory: the TPM
	// and the socket are open. Confined to it, a compromised service
	// cannot reopen the TPM, read another service's state, or change the
	// policy, /etc or the binaries (uid 0 owns them).
	files, err := confinement(f.StateDir)
	if err == nil {
		err = sandbox.RestrictFiles(files)
	}
	if err != nil {
		srv.Close()
		return fmt.Errorf("%w: refusing to serve unconfined", err)
	}
	fmt.Fprintf(logOut, "identity: files confined: %s\n", files)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	if err := ready.Notify(); err != nil {
		fmt.Fprintln(logOut, "identity: notify init:", err)
	}
	fmt.Fprintf(logOut, "identity: serving on %s (started: %s)\n", socket, id.StartupSteps())
	select {
	case s := <-sigs:
		fmt.Fprintf(logOut, "identity: %v, stopping\n", s)
		return srv.Close()
	case err := <-errc:
		return err
	}
}

// confinement is what the running service may open: its state
// directory (seals, secrets, certificates, the staged reseal), /proc
// (to read a root caller's capabilities) and, when the image has one, the
// time zone. Another process's /proc files that need ptrace access
// (environ, mem) stay closed: Landlock refuses ptrace out of its domain.
func confinement(stateDir string) (sandbox.Files, error) {
	dir, err := filepath.Abs(stateDir)
	if err != nil {
		return sandbox.Files{}, fmt.Errorf("-state %s: %w", stateDir, err)
	}
	// /proc: the capabilities of a root caller (rootWithAdmin).
	return sandbox.Files{Read: []string{"/proc"}, ReadIfExists: []string{"/etc/localtime"}, Write: []string{dir}}, nil
}

// DevModePrefix starts every line the service logs in dev mode.
const DevModePrefix = "DEV MODE: "

// devModeLog returns a writer that starts every line written to w with
// DevModePrefix: in dev mode (no TPM, a software key) no log line of the
// service can be read without seeing it. Writes are serialised (the
// server's goroutines log too).
func devModeLog(w io.Writer) io.Writer {
	return &prefixWriter{w: w, prefix: []byte(DevModePrefix), bol: true}
}

type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix []byte
	bol    bool // the next byte starts a line
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = p.buf[:0]
	for rest := b; len(rest) > 0; {
		if p.bol {
			p.buf = append(p.buf, p.prefix...)
		}
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line = rest[:i+1]
		}
		p.buf = append(p.buf, line...)
		rest = rest[len(line):]
		p.bol = line[len(line)-1] == '\n'
	}
	if _, err := p.w.Write(p.buf); err != nil {
		return 0, err
	}
	return len(b), nil
}
