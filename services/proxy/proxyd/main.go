// Package proxyd is the main of otgate-proxy, the gate's identity-aware
// proxy service (package proxy): the TLS 1.3 listener for logins and
// tunnels, the admin socket, and optionally the syslog export of the audit
// log. SIGHUP reloads the site file; SIGINT/SIGTERM end every session
// (recorded) and exit.
package proxyd

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/audit/syslog"
	"github.com/otgate/otgate/inspect/modbus"
	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/ready"
	"github.com/otgate/otgate/internal/sandbox"
	"github.com/otgate/otgate/services/identity/api"
	"github.com/otgate/otgate/services/overlay/alloc"
	"github.com/otgate/otgate/services/proxy"
	"github.com/otgate/otgate/services/proxy/adminapi"
	"github.com/otgate/otgate/services/proxy/auth"
	"github.com/otgate/otgate/services/proxy/auth/userca"
	"golang.org/x/sys/unix"
)

// options are otgate-proxy's command line.
type options struct {
	listen, idSock, state, auditDir string
	// loader loads the policy; source names it in logs (-site or -policy).
	loader                  proxy.PolicyLoader
	source                  string
	adminSock               string
	mark                    int
	idle                    time.Duration
	maxSessions, maxPerUser int
	maxCert                 time.Duration
	// maxLoginFailures consecutive failed logins lock an account;
	// autoUnlock, when not zero, lifts the lock after that long.
	maxLoginFailures int
	autoUnlock       time.Duration
	devCert          bool
	syslogAddr       string
	syslogTLS        bool
	syslogCA         string
	// policyFile is the -site or -policy file, read at start and on
	// every reload.
	policyFile string
	// auditMaxMiB and auditReserveMiB: the audit log's retention (0:
	// automatic, see planAuditStorage).
	auditMaxMiB, auditReserveMiB int64
	// auditAnchorEvery: advance the audit log's TPM anchor this often
	// while it runs (audit.WithAnchorEvery; 0: at open and close only).
	auditAnchorEvery time.Duration
	// modbusSecurity is the Modbus/TCP Security listener's address (""
	// none); overlayState the overlay allocator's table that maps its
	// connections' local addresses to assets.
	modbusSecurity, overlayState string
	// bound are the listeners Main bound before the proxy confined
	// itself (nil: run binds them, as in tests).
	bound *listeners
}

// listeners are the proxy's TCP listeners: login and tunnels, and
// Modbus/TCP Security (nil without -modbus-security).
type listeners struct{ main, modbusSecurity net.Listener }

// listen binds o's listeners.
func listen(o *options) (*listeners, error) {
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return nil, err
	}
	l := &listeners{main: ln}
	if o.modbusSecurity != "" {
		if l.modbusSecurity, err = net.Listen("tcp", o.modbusSecurity); err != nil {
			ln.Close()
			return nil, fmt.Errorf("-modbus-security: %w", err)
		}
	}
	return l, nil
}

// anchorCheck is how often the status note follows the audit log's
// anchor state.
const anchorCheck = time.Minute

// minAuditAnchorEvery bounds -audit-anchor-every: each advance is a write
// to the TPM's non-volatile memory, whose endurance is finite.
const minAuditAnchorEvery = 10 * time.Minute

// parseFlags defines otgate-proxy's flags on fs, parses args and checks
// the values.
func parseFlags(fs *flag.FlagSet, args []string) (*options, error) {
	o := &options{}
	fs.StringVar(&o.listen, "listen", ":8443", "uplink address of the TLS listener")
	fs.StringVar(&o.modbusSecurity, "modbus-security", "", "also serve Modbus/TCP Security (Modbus over mutual TLS) here, e.g. :802: a connection to an asset's overlay endpoint is a modbus session to that asset (\"\": off)")
	fs.StringVar(&o.overlayState, "overlay-state", alloc.DefaultStatePath, "the overlay allocator's table (with -modbus-security), read-only")
	fs.StringVar(&o.idSock, "identity", api.DefaultSocket, "identity service socket")
	fs.StringVar(&o.state, "state", "/perm/proxy", "user store directory")
	fs.StringVar(&o.auditDir, "audit", "/perm/audit", "audit log directory")
	sitePath := fs.String("site", "", "site file (YAML; development hosts)")
	appliedPath := fs.String("policy", "", "the applied compiled policy (the appliance: /perm/policy/applied.cbor); exactly one of -site and -policy")
	fs.StringVar(&o.adminSock, "admin", adminapi.DefaultSocket, "admin socket (root only)")
	fs.IntVar(&o.mark, "mark", 0, "SO_MARK on sockets to assets (the segment ruleset lets only this mark reach assets)")
	fs.DurationVar(&o.idle, "idle", 30*time.Minute, "end sessions idle this long")
	fs.IntVar(&o.maxSessions, "max-sessions", 1024, "live sessions at most")
	fs.IntVar(&o.maxPerUser, "max-sessions-per-user", 64, "live sessions per user at most")
	fs.DurationVar(&o.maxCert, "max-cert-validity", 8*time.Hour, "client certificates live at most this long")
	fs.IntVar(&o.maxLoginFailures, "max-login-failures", auth.DefaultMaxFailures, "lock an account after this many consecutive failed logins (at least 1)")
	fs.DurationVar(&o.autoUnlock, "auto-unlock", 0, "lift a login lock after this long (0: locked until an admin unlocks it)")
	fs.BoolVar(&o.devCert, "dev-self-signed", false, "DEV ONLY: serve a self-signed software certificate instead of the device identity's")
	fs.StringVar(&o.syslogAddr, "syslog", "", "export the audit log to this syslog receiver (host:port, RFC 5424 over TCP)")
	fs.BoolVar(&o.syslogTLS, "syslog-tls", false, "use TLS (RFC 5425) to the syslog receiver")
	fs.StringVar(&o.syslogCA, "syslog-ca", "", "PEM CA of the syslog receiver (with -syslog-tls)")
	fs.Int64Var(&o.auditMaxMiB, "audit-max-mib", 0, "the audit log's budget in MiB: its oldest files, once signed (and exported with -syslog), are removed beyond it (0: half of its file system)")
	fs.Int64Var(&o.auditReserveMiB, "audit-reserve-mib", 0, "refuse new sessions when less than this many MiB are free on the audit log's file system (0: 2% of it, 8 to 512 MiB)")
	fs.DurationVar(&o.auditAnchorEvery, "audit-anchor-every", 6*time.Hour, "also advance the audit log's TPM anchor this often while it runs, so that a copy of the log put back after a power cut shows (0: at open and close only; at least 10m: each advance is a TPM NV write)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (every setting is a flag)", fs.Arg(0))
	}
	switch {
	case (*sitePath == "") == (*appliedPath == ""):
		return nil, errors.New("want exactly one of -site FILE.yaml and -policy applied.cbor")
	case *sitePath != "":
		o.loader, o.source, o.policyFile = proxy.SiteFileLoader(*sitePath), *sitePath, *sitePath
	default:
		o.loader, o.source, o.policyFile = proxy.AppliedPolicyLoader(*appliedPath), *appliedPath, *appliedPath
	}
	if o.maxLoginFailures < 1 {
		return nil, fmt.Errorf("-max-login-failures %d: want at least 1", o.maxLoginFailures)
	}
	if o.auditMaxMiB < 0 || o.auditReserveMiB < 0 {
		return nil, fmt.Errorf("-audit-max-mib %d, -audit-reserve-mib %d: want 0 (automatic) or more", o.auditMaxMiB, o.auditReserveMiB)
	}
	if o.auditAnchorEvery != 0 && o.auditAnchorEvery < minAuditAnchorEvery {
		return nil, fmt.Errorf("-audit-anchor-every %v: want 0 (at open and close only) or at least %v (each advance writes the TPM's NV memory)", o.auditAnchorEvery, minAuditAnchorEvery)
	}
	if o.autoUnlock < 0 {
		return nil, fmt.Errorf("-auto-unlock %v: want a duration of zero (admin unlocks) or more", o.autoUnlock)
	}
	return o, nil
}

func Main() {
	lg := log.New(os.Stderr, "", 0)
	o, err := parseFlags(flag.CommandLine, os.Args[1:])
	if err != nil {
		lg.Printf("otgate-proxy: %v", err)
		os.Exit(2)
	}
	// Before anything is read from the network: the proxy holds
	// CAP_NET_RAW for SO_MARK alone (see internal/sandbox). A proxy that
	// cannot give up the rest does not run.
	if err := sandbox.DenyRawNetwork(); err != nil {
		lg.Printf("otgate-proxy: %v: refusing to run without it", err)
		os.Exit(1)
	}
	lg.Printf("otgate-proxy: seccomp: %s denied", sandbox.Denied)
	// The listeners first: a port below 1024 (Modbus/TCP Security's 802)
	// is the only use of CAP_NET_BIND_SERVICE, which init raises for the
	// proxy's start (uid 101). It goes once they are bound, before any
	// connection is accepted (and before the confinement, which closes
	// /proc, where the drop checks every thread). Connections that come
	// meanwhile wait in the backlog until the proxy is ready. Root, on a
	// development host, holds every capability anyway.
	if o.bound, err = listen(o); err != nil {
		lg.Printf("otgate-proxy: %v", err)
		os.Exit(1)
	}
	if os.Geteuid() != 0 {
		if err := sandbox.DropCapabilities(unix.CAP_NET_BIND_SERVICE); err != nil {
			lg.Printf("otgate-proxy: %v: refusing to run with it", err)
			os.Exit(1)
		}
	}
	files, err := confine(o)
	if err != nil {
		lg.Printf("otgate-proxy: %v: refusing to run unconfined", err)
		os.Exit(1)
	}
	lg.Printf("otgate-proxy: files confined: %s", files)
	if err := run(context.Background(), lg, o); err != nil {
		lg.Printf("otgate-proxy: %v", err)
		if errors.Is(err, errQuarantine) {
			os.Exit(bootcfg.ExitNoRestart)
		}
		os.Exit(1)
	}
}

// confine confines the proxy to its files (sandbox.RestrictFiles), every
// path made absolute; the directories it writes are made first (0700; on
// the appliance init made them, owned by the proxy):
//   - read: the policy file's directory (a new policy is renamed into
//     it), /etc (the resolver's files for a syslog receiver's name, the
//     system's CA roots, the time zone), the syslog receiver's CA
//     file (-syslog-ca) and, with -modbus-security, the overlay
//     allocator's directory (-overlay-state: its table is replaced by a
//     rename);
//   - write: the user store (-state: users, the sealed CA key, the
//     syslog export's cursor), the audit log (-audit) and the admin
//     socket's directory.
//
// The identity socket is connected to, which Landlock 2 does not
// restrict. Nothing else opens: the other services' state, the TPM, the
// binaries, /tmp. Its uid (101) already keeps it out of root's files;
// this also keeps it from what every uid may read or write.
func confine(o *options) (sandbox.Files, error) {
	var f sandbox.Files
	policy, state, auditDir, admin, syslogCA := o.policyFile, o.state, o.auditDir, o.adminSock, o.syslogCA
	if err := sandbox.Absolute(&policy, &state, &auditDir, &admin, &syslogCA); err != nil {
		return f, err
	}
	adminDir := filepath.Dir(admin)
	for _, d := range []string{state, auditDir, adminDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return f, err
		}
	}
	f.Read = []string{filepath.Dir(policy), "/etc"}
	if syslogCA != "" {
		f.Read = append(f.Read, syslogCA)
	}
	if o.modbusSecurity != "" {
		// The allocator replaces its table by a rename: the directory.
		overlay := o.overlayState
		if err := sandbox.Absolute(&overlay); err != nil {
			return f, err
		}
		f.Read = append(f.Read, filepath.Dir(overlay))
	}
	f.Write = []string{state, auditDir, adminDir}
	return f, sandbox.RestrictFiles(f)
}

// run runs the proxy until a signal (or ctx ends: tests) stops it.
func run(ctx context.Context, lg *log.Logger, o *options) error {
	ph := newPhases()
	idc, err := api.Dial(o.idSock)
	if err != nil {
		return err
	}
	defer idc.Close()
	st, err := idc.Status()
	if err != nil {
		return err
	}
	u, err := url.Parse(st.DeviceURI)
	if err != nil || u.Host == "" {
		return fmt.Errorf("identity status: device URI %q names no site", st.DeviceURI)
	}
	device, err := idc.TLSCertificate()
	if err != nil {
		return err
	}
	ph.done("identity")
	listenerCert := device
	if o.devCert {
		lg.Printf("otgate-proxy: WARNING: DEV MODE: serving a SELF-SIGNED SOFTWARE certificate, not the device identity's; never use this on a production gate")
		if listenerCert, err = selfSigned(); err != nil {
			return err
		}
	}
	auditOpts := []audit.Option{audit.WithErrorHandler(func(err error) { lg.Printf("otgate-proxy: audit log: %v", err) })}
	if st.DevMode {
		// No TPM: the device key that signs the checkpoints is a
		// software key. Every record says so (audit.WithDevMode).
		lg.Printf("otgate-proxy: WARNING: DEV MODE: the identity service has no TPM (software key); every audit record is marked dev mode")
		auditOpts = append(auditOpts, audit.WithDevMode(api.DevModeAuditReason))
	} else {
		// The TPM's counter anchors the log against rollback (see
		// audit.Anchor): a log put back from an earlier copy is recorded
		// as such at this open.
		auditOpts = append(auditOpts, audit.WithAnchor(api.AuditAnchor{Client: idc}), audit.WithAnchorEvery(o.auditAnchorEvery))
	}
	cursor := ""
	if o.syslogAddr != "" {
		cursor = filepath.Join(o.state, "syslog.cursor")
	}
	storage, err := planAuditStorage(o.auditDir, o.auditMaxMiB, o.auditReserveMiB, cursor)
	if err != nil {
		return err
	}
	lg.Printf("otgate-proxy: audit log %s: %s", o.auditDir, storage.describe)
	auditOpts = append(auditOpts, audit.WithRetention(storage.retention), audit.WithMaxFileSize(storage.fileSize))
	w, err := audit.Open(o.auditDir, device.PrivateKey.(crypto.Signer), auditOpts...)
	if err != nil {
		return err
	}
	defer w.Close()
	if r := w.Recovery(); r != "" {
		// A power cut or a crash: the log says so in its chain (the
		// log-recovered record); the console says so too, where the
		// person who brings the gate back looks first.
		lg.Printf("otgate-proxy: audit log %s: %s", o.auditDir, r)
	}
	notes := &statusNotes{set: ready.Status}
	// The log anchors itself in the background (a few TPM round trips):
	// its verdict, and later that of its periodic advances, is a standing
	// note.
	go watchAnchor(ctx, w, anchorCheck, lg.Printf, func(s string) error { return notes.note("anchor", s) })
	ph.done("audit log")
	var srv *proxy.Server
	users, err := auth.Open(auth.Config{Dir: o.state, Sealer: idc, Issuer: auth.IssuerForSite(u.Host), Events: proxy.AuthEvents{Log: w, Logf: lg.Printf},
		MaxFailures: o.maxLoginFailures, AutoUnlock: o.autoUnlock,
		OnRevoke: func(user string) {
			if srv != nil {
				srv.RecheckUser(user)
			}
		}})
	if err != nil {
		return err
	}
	defer users.Close()
	ph.done("user store")
	ca, err := userca.Open(userca.Config{Site: u.Host, Sealer: idc, Device: device, Checker: users, MaxValidity: o.maxCert, Logf: lg.Printf})
	if err != nil {
		return err
	}
	ph.done("user CA")
	srv, err = proxy.New(proxy.Config{Certificate: listenerCert, Users: users, UserAdmin: users, CA: proxy.UserCA{CA: ca}, Log: w,
		LoadPolicy: o.loader, Mark: o.mark, IdleTimeout: o.idle, MaxCertValidity: o.maxCert,
		MaxSessions: o.maxSessions, MaxSessionsPerUser: o.maxPerUser, Logf: lg.Printf})
	if err != nil {
		return err
	}
	defer srv.Close()
	ph.done("policy")
	if err := os.MkdirAll(filepath.Dir(o.adminSock), 0o755); err != nil {
		return err
	}
	admin, err := srv.ListenAdmin(o.adminSock)
	if err != nil {
		return err
	}
	defer admin.Close()
	go admin.Serve()
	lns := o.bound
	if lns == nil {
		if lns, err = listen(o); err != nil {
			return err
		}
	}
	ln, mbs := lns.main, lns.modbusSecurity
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if o.syslogAddr != "" {
		cfg := syslog.Config{Dir: o.auditDir, Cursor: cursor, Addr: o.syslogAddr,
			// A Modbus transaction reaches the SIEM as its transcript line.
			Formatters: map[string]audit.PayloadFormatter{"modbus": func(p audit.Payload, s *audit.SessionStart) (string, bool) {
				return modbus.TranscriptLine(p, s.User, s.Asset)
			}},
			OnError:  func(err error) { lg.Printf("otgate-proxy: syslog export: %v", err) },
			OnStatus: syslogStatus(lg.Printf, func(s string) error { return notes.note("syslog", s) }),
			OnReset:  syslogReset(ctx, lg.Printf, w)}
		if o.syslogTLS {
			cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
			if o.syslogCA != "" {
				b, err := os.ReadFile(o.syslogCA)
				if err != nil {
					return err
				}
				cfg.TLS.RootCAs = x509.NewCertPool()
				if !cfg.TLS.RootCAs.AppendCertsFromPEM(b) {
					return fmt.Errorf("-syslog-ca %s: no PEM certificate", o.syslogCA)
				}
			}
		}
		x, err := syslog.New(cfg)
		if err != nil {
			return err
		}
		go x.Run(ctx)
	}
	go watchStorage(ctx, w, storageCheck, lg.Printf, func(s string) error { return notes.note("storage", s) })
	quarantine := watchIdentity(ctx, idc.Status, identityWatchEvery, lg.Printf)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if mbs != nil {
		go func() { errc <- srv.ServeModbusSecurity(mbs, &proxy.OverlayTable{Path: o.overlayState}) }()
		lg.Printf("otgate-proxy: Modbus/TCP Security on %s: each asset's overlay endpoint in %s", mbs.Addr(), o.overlayState)
	}
	// The identity and the key are what a client's first login is told
	// to check (otgate login --gate-id, --pin): both on the line users
	// read.
	lg.Printf("otgate-proxy: listening on %s (site %s, identity %s, gate key SHA-256 %s; %v)", ln.Addr(), u.Host, st.DeviceURI, spkiHash(listenerCert), ph)
	ready.Notify()
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	for {
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
			lg.Printf("otgate-proxy: stopping: ending every session and exiting")
			return nil
		case reason := <-quarantine:
			lg.Printf("otgate-proxy: GATE IN QUARANTINE: %s: ending every session and stopping; init does not restart the proxy (see `otgate identity status` for what to do)", reason)
			ready.Status("QUARANTINE: " + reason)
			srv.Shutdown(proxy.EndQuarantine + ": " + reason)
			return errQuarantine
		case s := <-sig:
			if s != syscall.SIGHUP {
				lg.Printf("otgate-proxy: %v: ending every session and exiting", s)
				return nil
			}
			r, err := srv.Reload()
			if err != nil {
				lg.Printf("otgate-proxy: SIGHUP: %v", err)
				continue
			}
			lg.Printf("otgate-proxy: SIGHUP: policy reloaded from %s, %s", o.source, r)
		}
	}
}

// syslogStatus shows a held-up syslog export in the proxy's status row
// (init's STATUS= note, `otgate status`) while it lasts, and logs when it
// moves again: the export retries by itself, so this is how an operator
// sees that the SIEM copy is behind. The export is not a reason to call
// the proxy unhealthy (init would stop petting the watchdog: a SIEM down
// must not reboot the gate).
func syslogStatus(logf func(string, ...any), status func(string) error) func(string) {
	return func(note string) {
		if note == "" {
			logf("otgate-proxy: syslog export: moving again")
			status("")
			return
		}
		status("DEGRADED: syslog " + note)
	}
}

// syslogReset logs a cursor the exporter set aside and records it in the
// audit log itself (event syslog.EventExportReset), so that the SIEM too
// learns why it receives records again.
func syslogReset(ctx context.Context, logf func(string, ...any), w *audit.Writer) func(string) {
	return func(what string) {
		logf("otgate-proxy: syslog export: %s", what)
		if _, err := w.Append(ctx, audit.Event{Type: syslog.EventExportReset, Reason: what}); err != nil {
			logf("otgate-proxy: syslog export: recording the cursor reset in the audit log: %v", err)
		}
	}
}

func spkiHash(c *tls.Certificate) string {
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return "?"
	}
	h := crypto.SHA256.New()
	h.Write(leaf.RawSubjectPublicKeyInfo)
	return fmt.Sprintf("%x", h.Sum(nil))
}

func selfSigned() (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "otgate DEV self-signed"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(30 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// anchorNote is the status note for the audit log's anchor state ("" when
// all is well).
func anchorNote(st audit.AnchorState) string {
	switch {
	case st.Alarm != "":
		return "DEGRADED: audit log ANCHOR MISMATCH (its anchor-mismatch record says what; otgate audit verify)"
	case st.Unavailable != "":
		return "DEGRADED: audit log not anchored (the TPM counter did not answer at open)"
	case st.Failing != "":
		return "DEGRADED: audit log anchor: the periodic advance failed: " + st.Failing
	}
	return ""
}

// watchAnchor keeps the proxy's status note about the audit log's anchor
// (anchorNote) up to date, checking every every once the log's anchoring
// at open is over (the first AnchorState waits for it), and logs each
// change.
func watchAnchor(ctx context.Context, w *audit.Writer, every time.Duration, logf func(string, ...any), note func(string) error) {
	watchNote(ctx, every, func() string { return anchorNote(w.AnchorState()) }, "audit log anchor: advanced again", logf, note)
}

// statusNotes joins the proxy's standing notes (an audit anchor alarm for
// the whole run, a held-up syslog export while it lasts) into its one
// status note, so that one clearing does not hide the other.
type statusNotes struct {
	set   func(string) error
	mu    sync.Mutex
	notes map[string]string
}

func (n *statusNotes) note(key, s string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.notes == nil {
		n.notes = map[string]string{}
	}
	if s == "" {
		delete(n.notes, key)
	} else {
		n.notes[key] = s
	}
	var parts []string
	for _, k := range []string{"anchor", "storage", "syslog"} {
		if v := n.notes[k]; v != "" {
			parts = append(parts, v)
		}
	}
	return n.set(strings.Join(parts, "; "))
}
