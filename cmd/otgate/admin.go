//go:build !windows

package main

import (
	"bufio"
	"context"
	"crypto"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/services/identity/api"
	"github.com/otgate/otgate/services/proxy/adminapi"
	"github.com/otgate/otgate/services/proxy/auth"
	"github.com/otgate/otgate/services/proxy/auth/qrterm"
	"github.com/otgate/otgate/services/proxy/auth/totp"
)

func init() {
	register(command{
		name:    "admin",
		summary: "gate administration: user add|list|unlock|disable|enable|revoke|remove|reset-totp",
		run: func(args []string) error {
			return runAdmin(args, adminIO{in: os.Stdin, out: os.Stdout, errOut: os.Stderr})
		},
	})
}

const adminUsage = `usage: otgate admin user <subcommand> [flags] [name]

  add NAME [--roles r1,r2] [--password-stdin | --password-file FILE]
           [--totp-secret-file FILE] [--exists-ok]
                   create a user: asks for the password twice (or reads one
                   line from standard input or a file), prints the
                   authenticator QR code and otpauth:// URI; the first login
                   confirms it. --totp-secret-file imports an existing base32
                   secret; --exists-ok succeeds without change when the user
                   exists (set-up scripts). A --password-file or
                   --totp-secret-file group or others may access is
                   refused (chmod 600)
  list             users and their state
  unlock NAME      lift a lockout after failed logins
  disable NAME     refuse the user's logins and end its certificates
  enable NAME      allow a disabled user again
  revoke NAME      end every certificate issued to the user so far
  remove NAME      delete the user
  reset-totp NAME  new authenticator secret (a lost phone); prints the QR code

On the gate (as root) the commands go through the running proxy's admin
socket (-admin, default ` + adminapi.DefaultSocket + `): the proxy
holds the user store open, and live sessions of a disabled, revoked or
removed user end at once.

--direct opens the user store itself instead (a development host, with the
proxy stopped): -identity (identity service socket, default
/run/otgate/identity.sock) and -state (user store directory, default
/perm/proxy); it needs the store key from the identity service as the
"proxy" service, so run it as a uid the identity service allows as proxy.
A change made with --direct is recorded in the proxy's audit log (-audit,
default /perm/audit, signed by the device key) before it is acknowledged,
as the admin socket records it; when the log cannot be opened (the proxy
is running and holds it, or it is damaged) the change is refused and
nothing is changed. list is not recorded and does not open the log.`

// adminIO are the streams of an admin command (tests replace them).
type adminIO struct {
	in          io.Reader
	out, errOut io.Writer
}

func runAdmin(args []string, aio adminIO) (err error) {
	if len(args) < 2 || args[0] != "user" {
		return usagef("admin: want: admin user <subcommand>\n%s", adminUsage)
	}
	sub, args := args[1], args[2:]
	switch sub {
	case "add", "list", "unlock", "disable", "enable", "revoke", "remove", "reset-totp":
	default:
		return usagef("admin user: unknown subcommand %q\n%s", sub, adminUsage)
	}
	fs := flag.NewFlagSet("otgate admin user "+sub, flag.ContinueOnError)
	fs.SetOutput(aio.errOut)
	direct := fs.Bool("direct", false, "open the user store directly (proxy stopped) instead of the proxy's admin socket")
	adminSock := fs.String("admin", adminapi.DefaultSocket, "the proxy's admin socket")
	socket := fs.String("identity", api.DefaultSocket, "with --direct: identity service socket")
	state := fs.String("state", "/perm/proxy", "with --direct: user store directory")
	auditDir := fs.String("audit", "/perm/audit", "with --direct: the proxy's audit log directory; a change is recorded there before it is acknowledged, and refused when it cannot be")
	var roles, secretFile, pwFile *string
	var pwStdin, invert, existsOK *bool
	if sub == "add" {
		roles = fs.String("roles", "", "comma-separated roles")
		pwStdin = fs.Bool("password-stdin", false, "read the password from one line of standard input")
		pwFile = fs.String("password-file", "", "read the password from the first line of this file")
		secretFile = fs.String("totp-secret-file", "", "import this base32 TOTP secret (one line) instead of generating one")
		existsOK = fs.Bool("exists-ok", false, "a user of that name already existing is success (nothing is changed)")
	}
	if sub == "add" || sub == "reset-totp" {
		invert = fs.Bool("invert-qr", false, "draw the QR code for a light-background terminal")
	}
	name, err := parseNamed(fs, args, sub != "list")
	if err != nil {
		return err
	}
	var password, secret []byte
	if sub == "add" {
		// Check the name and ask for the password before touching the store.
		if err := auth.CheckName(name); err != nil {
			return err
		}
		if *secretFile != "" {
			if secret, err = readSecretFile(*secretFile); err != nil {
				return err
			}
		}
		switch {
		case *pwFile != "" && *pwStdin:
			return errors.New("admin user add: --password-file and --password-stdin exclude each other")
		case *pwFile != "":
			f, err := openPrivate("--password-file", *pwFile)
			if err != nil {
				return err
			}
			password, err = readNewPassword(adminIO{in: f, out: aio.out, errOut: aio.errOut}, true)
			f.Close()
			if err != nil {
				return fmt.Errorf("--password-file %s: %w", *pwFile, err)
			}
		default:
			if password, err = readNewPassword(aio, *pwStdin); err != nil {
				return err
			}
		}
	}
	var ua userAdmin
	if *direct {
		// list changes nothing and is not recorded (as through the
		// socket); every other subcommand needs the audit log.
		sa, closeAll, oerr := openDirect(*socket, *state, *auditDir, sub != "list", aio.errOut)
		if oerr != nil {
			return oerr
		}
		// err is runAdmin's result: a change recorded and acknowledged
		// whose log then fails to close is still reported.
		defer func() {
			if cerr := closeAll(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}()
		ua = sa
	} else {
		ua = socketAdmin{path: *adminSock}
	}
	switch sub {
	case "add":
		var rs []string
		for _, r := range strings.Split(*roles, ",") {
			if r = strings.TrimSpace(r); r != "" {
				rs = append(rs, r)
			}
		}
		if *existsOK {
			users, err := ua.list()
			if err != nil {
				return err
			}
			for _, u := range users {
				if u.Name == name {
					fmt.Fprintf(aio.out, "user %s exists already (roles: %s); nothing changed\n", name, strings.Join(u.Roles, ","))
					return nil
				}
			}
		}
		en, err := ua.add(name, password, rs, secret)
		if err != nil && !made(err) {
			return err
		}
		fmt.Fprintf(aio.out, "user %s added (roles: %s); enrolment pending until the first login%s\n", name, strings.Join(rs, ","), ua.where())
		return errors.Join(printEnrolment(aio.out, en, *invert), err)
	case "list":
		users, err := ua.list()
		if err != nil {
			return err
		}
		return printUsers(aio.out, users)
	case "revoke":
		msg, err := ua.revoke(name)
		if err != nil && !made(err) {
			return err
		}
		fmt.Fprintf(aio.out, "user %s: every certificate issued before is revoked (%s)\n", name, msg)
		return err
	case "reset-totp":
		en, err := ua.resetTOTP(name)
		if err != nil && !made(err) {
			return err
		}
		fmt.Fprintf(aio.out, "user %s: new authenticator secret; enrolment pending until the next login\n", name)
		return errors.Join(printEnrolment(aio.out, en, *invert), err)
	}
	// A change made whose outcome the audit log could not record (made)
	// is still said, then its error.
	ended, err := ua.change(sub, name)
	if err != nil && !made(err) {
		return err
	}
	fmt.Fprintf(aio.out, "user %s: %s%s\n", name, map[string]string{"unlock": "unlocked", "disable": "disabled",
		"enable": "enabled", "remove": "removed"}[sub], ended)
	return err
}

// openPrivate opens the secret file of flag, refusing one that group or
// others may read or change, as ssh refuses such a private key: the
// secret in it may have been read by someone else.
func openPrivate(flag, file string) (*os.File, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		f.Close()
		return nil, fmt.Errorf("%s %s: mode %04o lets group or others read or change it: chmod 600 %s (if others may have read it, the secret in it is no longer secret: choose a new one); nothing was changed", flag, file, m, file)
	}
	return f, nil
}

// readSecretFile reads a base32 TOTP secret (the first line of file).
func readSecretFile(file string) ([]byte, error) {
	f, err := openPrivate("--totp-secret-file", file)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("--totp-secret-file %s: %w", file, err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	secret, err := totp.DecodeSecret(strings.TrimSpace(line))
	if err != nil {
		return nil, fmt.Errorf("--totp-secret-file %s: %w", file, err)
	}
	if len(secret) < totp.MinSecretLen {
		return nil, fmt.Errorf("--totp-secret-file %s: secret of %d bytes, want at least %d", file, len(secret), totp.MinSecretLen)
	}
	return secret, nil
}

// parseNamed parses flags with the user name before or after them.
func parseNamed(fs *flag.FlagSet, args []string, wantName bool) (string, error) {
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	rest := fs.Args()
	if name == "" && len(rest) > 0 {
		name, rest = rest[0], rest[1:]
	}
	switch {
	case len(rest) > 0:
		return "", usagef("%s: unexpected arguments %q", fs.Name(), rest)
	case wantName && name == "":
		return "", usagef("%s: missing user name", fs.Name())
	case !wantName && name != "":
		return "", usagef("%s: takes no user name (got %q)", fs.Name(), name)
	}
	return name, nil
}

// readNewPassword reads the new user's password: one line of standard
// input with --password-stdin, else twice without echo from the terminal.
func readNewPassword(aio adminIO, fromStdin bool) ([]byte, error) {
	if fromStdin {
		line, err := bufio.NewReader(io.LimitReader(aio.in, auth.MaxPasswordLen+2)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read password from standard input: %w", err)
		}
		pw := strings.TrimRight(line, "\r\n")
		if pw == "" {
			return nil, errors.New("read password from standard input: empty")
		}
		return []byte(pw), nil
	}
	f, ok := aio.in.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, errors.New("standard input is not a terminal: pass --password-stdin and write the password to it")
	}
	fmt.Fprintf(aio.errOut, "password (at least %d characters): ", auth.MinPasswordLen)
	a, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(aio.errOut)
	if err != nil {
		return nil, fmt.Errorf("read password: %w", err)
	}
	fmt.Fprint(aio.errOut, "again: ")
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(aio.errOut)
	if err != nil {
		return nil, fmt.Errorf("read password: %w", err)
	}
	if string(a) != string(b) {
		return nil, errors.New("the two passwords differ; nothing was changed")
	}
	return a, nil
}

// openDirect connects to the identity service and opens the user store
// (--direct). With record (every subcommand but list) it first opens the
// proxy's audit log in auditDir as the proxy does (signed by the device
// key through the identity service; anchored to the TPM counter, or
// marked dev mode), after checking the identity service signs: a change
// made with --direct is recorded there before it is acknowledged
// (storeAdmin.record), and when the log cannot be opened (the proxy
// runs and holds it, the log is damaged, the identity service cannot
// sign) the command is refused and nothing is changed. There is no flag
// to go on without the record: a store whose log cannot be opened
// serves no proxy (the proxy does not start without its log), so the
// change could wait for the log to be fixed, and an unrecorded change is
// exactly what the log is there to prevent. closeAll closes the store
// and then the log (sealing it); its error says the seal failed.
func openDirect(socket, dir, auditDir string, record bool, errOut io.Writer) (_ storeAdmin, _ func() error, err error) {
	var closers []func() error
	closeAll := func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		closers = nil
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	c, err := api.Dial(socket)
	if err != nil {
		return storeAdmin{}, nil, err
	}
	closers = append(closers, c.Close)
	st, err := c.Status()
	if err != nil {
		return storeAdmin{}, nil, err
	}
	if st.Caller != "proxy" {
		return storeAdmin{}, nil, fmt.Errorf("the identity service at %s knows this uid (%d) as service %q, but the user store key is a secret of service \"proxy\": run as the proxy's uid (or route the command through the proxy)", socket, os.Getuid(), st.Caller)
	}
	a := storeAdmin{logDir: auditDir, caller: directCaller()}
	if u, err := url.Parse(st.DeviceURI); err == nil {
		a.site = u.Host
	}
	var events auth.Events = logEvents{errOut}
	if record {
		w, err := openDirectLog(c, st.DevMode, auditDir, errOut)
		if err != nil {
			return storeAdmin{}, nil, err
		}
		closers = append(closers, func() error {
			if err := w.Close(); err != nil {
				return fmt.Errorf("audit log %s: closing it after the recorded change: %w (the change and its record are durable; the proxy's next start signs what is unsigned)", auditDir, err)
			}
			return nil
		})
		a.log = w
		events = auditEvents{log: w, errOut: errOut}
	}
	s, err := auth.Open(auth.Config{Dir: dir, Sealer: c, Issuer: auth.IssuerForSite(a.site), Events: events})
	if err != nil {
		return storeAdmin{}, nil, err
	}
	closers = append(closers, func() error { s.Close(); return nil })
	a.st = s
	return a, closeAll, nil
}

// openDirectLog opens the proxy's audit log in dir for `--direct` as the
// proxy opens it (services/proxy/proxyd): the device key signs through
// the identity service c; the log is anchored to its TPM counter, or, in
// dev mode, marked so. The identity service is made to sign once first,
// so a log that could not be signed is never written to.
//
// It does not take the proxy's storage plan (planAuditStorage: retention
// and file size from the size of /perm and the proxy's flags), on
// purpose: without a retention it removes no file, and it must not (it
// cannot know whether the proxy exports to a syslog receiver, -syslog,
// nor what the receiver has acknowledged: a budget without that would
// delete evidence not yet exported); the reserve refuses session starts
// only, which it never writes; its file size, audit's default 64 MiB, is
// the largest the proxy plans, so it rotates nowhere the proxy would not,
// and its few records past a smaller planned size end that file at the
// proxy's next append (a rotation, as any). The proxy applies its
// retention when it opens the log again.
func openDirectLog(c *api.Client, devMode bool, dir string, errOut io.Writer) (*audit.Writer, error) {
	refuse := func(what string, err error) error {
		return fmt.Errorf("--direct: a change is recorded in the proxy's audit log %s before it is acknowledged, and %s: %w; nothing was changed", dir, what, err)
	}
	cert, err := c.TLSCertificate()
	if err != nil {
		return nil, refuse("the device key that signs it is not available", err)
	}
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, refuse("the device key that signs it is not available", fmt.Errorf("identity tls-cert: key %T cannot sign", cert.PrivateKey))
	}
	// A checkpoint of no log: the identity signs checkpoints and TLS
	// handshakes only.
	var head audit.Hash
	probe := audit.CheckpointMessage("otgate-admin-direct-probe", 0, 0, head[:])
	if _, err := crypto.SignMessage(signer, rand.Reader, probe, crypto.SHA256); err != nil {
		return nil, refuse("the identity service does not sign", err)
	}
	opts := []audit.Option{audit.WithErrorHandler(func(err error) { fmt.Fprintf(errOut, "otgate admin: audit log %s: %v\n", dir, err) })}
	if devMode {
		opts = append(opts, audit.WithDevMode(api.DevModeAuditReason))
	} else {
		opts = append(opts, audit.WithAnchor(api.AuditAnchor{Client: c}))
	}
	w, err := audit.Open(dir, signer, opts...)
	switch {
	case errors.Is(err, audit.ErrInUse):
		return nil, refuse("another process holds it (is the proxy running? then leave out --direct: its admin socket records the change)", err)
	case err != nil:
		return nil, refuse("it cannot be opened (otgate audit verify says why)", err)
	}
	return w, nil
}

// directCaller is this process as the audit log names the caller of a
// --direct change (the admin socket names its peer from SO_PEERCRED).
func directCaller() adminapi.Caller {
	c := adminapi.Caller{UID: os.Getuid(), PID: os.Getpid(), Comm: adminapi.Comm(os.Getpid()), Direct: true}
	if c.Comm == "" {
		c.Comm = filepath.Base(os.Args[0])
	}
	return c
}

// logEvents prints the store's events (list: the audit log is not open).
type logEvents struct{ w io.Writer }

func (l logEvents) AuthEvent(e auth.AuthEvent) {
	fmt.Fprintf(l.w, "audit: %s %s user=%s generation=%d %s\n", e.Time.UTC().Format(time.RFC3339), e.Kind, e.User, e.Generation, e.Detail)
}

// auditEvents writes the store's events to the audit log durably, as the
// proxy does (proxy.AuthEvents; both record adminapi.StoreAuditEvent), and
// prints them.
type auditEvents struct {
	log    *audit.Writer
	errOut io.Writer
}

func (a auditEvents) AuthEvent(e auth.AuthEvent) {
	logEvents{a.errOut}.AuthEvent(e)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := a.log.Append(ctx, adminapi.StoreAuditEvent(string(e.Kind), e.User, string(e.Reason), e.Detail, e.Source)); err != nil {
		fmt.Fprintf(a.errOut, "otgate admin: audit log: store event %s of %q: %v\n", e.Kind, e.User, err)
	}
}

func printEnrolment(w io.Writer, en *adminapi.Enrolment, invert bool) error {
	qr, err := qrterm.Render(en.URI, invert)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nScan this QR code with an authenticator app (or enter the secret by hand):\n\n%s\n%s\n", qr, en.URI)
	s := totp.EncodeSecret(en.Secret)
	var groups []string
	for len(s) > 4 {
		groups, s = append(groups, s[:4]), s[4:]
	}
	groups = append(groups, s)
	_, err = fmt.Fprintf(w, "secret: %s (%s, %d digits, %d s)\n", strings.Join(groups, " "), en.Algorithm, en.Digits, en.Period)
	return err
}

func printUsers(w io.Writer, users []auth.UserInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLES\tSTATE\tFAILURES\tGENERATION\tLAST LOGIN")
	for _, u := range users {
		var state []string
		switch {
		case u.Disabled:
			state = append(state, "disabled")
		case u.Pending:
			state = append(state, "pending")
		default:
			state = append(state, "active")
		}
		if u.Locked {
			l := "locked"
			if !u.LockedUntil.IsZero() {
				l += " until " + u.LockedUntil.UTC().Format(time.RFC3339)
			}
			state = append(state, l)
		}
		last := "never"
		if !u.LastLogin.IsZero() {
			last = u.LastLogin.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", u.Name, strings.Join(u.Roles, ","), strings.Join(state, ","), u.Failures, u.Generation, last)
	}
	return tw.Flush()
}
