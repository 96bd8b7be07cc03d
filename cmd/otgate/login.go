package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/otgate/otgate/client"
	"github.com/otgate/otgate/services/proxy/wire"
)

func init() {
	register(command{name: "login", summary: "log in to a gate with password and TOTP (login <gate-url>)",
		run: func(args []string) error { return runLogin(args, os.Stdin, os.Stdout, os.Stderr) }})
}

// profileDirFlag adds --profile (the credential directory).
func profileDirFlag(fs *flag.FlagSet) *string {
	return fs.String("profile", "", "credential directory (default: the user config dir's otgate folder)")
}

// openProfile is `otgate NAME [--profile DIR]` for a command that takes no
// arguments: it opens the stored credential.
func openProfile(name string, args []string) (*client.Session, error) {
	fs := flag.NewFlagSet("otgate "+name, flag.ContinueOnError)
	dir := profileDirFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() != 0 {
		return nil, usagef("usage: otgate %s [--profile DIR]", name)
	}
	s, err := openSession(*dir)
	var unprotected *client.UnprotectedError
	if name == "logout" && errors.As(err, &unprotected) {
		// A credential others could read or change is the one to end
		// at the gate: logout goes ahead, and says what it found.
		if s, err = client.OpenToRevoke(*dir); err == nil {
			fmt.Fprintf(os.Stderr, "otgate logout: %s: logging out ends it at the gate and deletes it here\n", unprotectedWhat(unprotected))
		}
	}
	if errors.Is(err, client.ErrNoProfile) {
		where := *dir
		if where == "" {
			where, _ = client.DefaultDir()
		}
		if name == "logout" {
			return nil, fmt.Errorf("not logged in: no credential in %s, nothing to log out of", where)
		}
		return nil, fmt.Errorf("not logged in: no credential in %s (run %s <gate>)", where, loginCommand(*dir))
	}
	return s, err
}

// openSession is client.Open, whose *client.UnprotectedError names the
// logout command of the profile directory dir (the --profile flag's value).
func openSession(dir string) (*client.Session, error) {
	s, err := client.Open(dir)
	var unprotected *client.UnprotectedError
	if errors.As(err, &unprotected) {
		unprotected.LogoutCmd = logoutCommand(dir)
	}
	return s, err
}

// unprotectedWhat says what is wrong with a profile's file, without the
// refusal.
func unprotectedWhat(e *client.UnprotectedError) string {
	if e.Holds != "" {
		if e.Owner >= 0 {
			return fmt.Sprintf("%s, above the profile directory %s, belongs to uid %d, not to you (uid %d) nor root", e.Path, e.Holds, e.Owner, e.Own)
		}
		return fmt.Sprintf("%s, above the profile directory %s, was writable by other users (mode %04o)", e.Path, e.Holds, uint32(e.Mode.Perm()))
	}
	if e.Owner >= 0 {
		return fmt.Sprintf("%s belongs to uid %d, not to you (uid %d)", e.Path, e.Owner, e.Own)
	}
	return fmt.Sprintf("%s was open to other users (mode %04o)", e.Path, uint32(e.Mode.Perm()))
}

// logoutCommand is the logout command line for the profile directory dir.
func logoutCommand(dir string) string {
	if dir == "" {
		return "otgate logout"
	}
	return "otgate logout --profile " + shellQuote(dir)
}

// loginCommand is the login command line for the profile directory dir
// (the --profile flag's value, empty for the default).
func loginCommand(dir string) string {
	if dir == "" {
		return "otgate login"
	}
	return "otgate login --profile " + shellQuote(dir)
}

// shellQuote quotes s for a POSIX shell when it needs it, so that a hint
// can be pasted.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// relogin is the login command line that renews s.
func relogin(s *client.Session) string {
	dir := s.Dir
	if d, err := client.DefaultDir(); err == nil && d == dir {
		dir = ""
	}
	cmd := loginCommand(dir)
	if s.Profile.CAFile != "" {
		cmd += " --ca " + shellQuote(s.Profile.CAFile)
	}
	return cmd + " " + s.Profile.Gate
}

// refusedCredential reports whether err is the gate refusing the stored
// credential (expired, revoked by a logout elsewhere or an administrator,
// or the user disabled): only a new login helps then.
func refusedCredential(err error) (*client.GateError, bool) {
	var ge *client.GateError
	return ge, errors.As(err, &ge) && ge.Code == wire.CodeAuth
}

// credentialRefused is the error of a command whose credential the gate
// refused (refusedCredential).
func credentialRefused(s *client.Session, ge *client.GateError) error {
	return fmt.Errorf("the gate refused your credential (%s): log in again with %s", ge.Msg, relogin(s))
}

func runLogin(args []string, in io.Reader, out, errOut io.Writer) error {
	fs := flag.NewFlagSet("otgate login", flag.ContinueOnError)
	user := fs.String("user", "", "user name (default: asked)")
	code := fs.String("code", "", "the TOTP code (default: asked)")
	pwStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	caFile := fs.String("ca", "", "PEM file of the CA that signed the gate's certificate (with --gate-id, or a yes at the terminal, at the first login)")
	gateIDFlag := fs.String("gate-id", "", "with --ca: the gate's identity, spiffe://SITE/gate/SERIAL, as its console shows it (\"device identity\"); the profile is bound to it")
	pinFlag := fs.String("pin", "", "the gate key's SHA-256 as the gate's console shows it (\"gate key SHA-256\"), for a first login without --ca")
	dir := profileDirFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("usage: otgate login [--user NAME] [--code 123456] [--password-stdin] [--pin SHA256 | --ca gate-ca.pem [--gate-id spiffe://SITE/gate/SERIAL]] <gate-url>")
	}
	if *pwStdin && *user == "" {
		// The first line is the password: it must not be read as the
		// user name.
		return usagef("--password-stdin reads the password from standard input: give the user with --user")
	}
	gateURL := fs.Arg(0)
	gate, err := client.ParseGate(gateURL)
	if err != nil {
		return err
	}
	pin := *pinFlag
	if pin != "" {
		if pin, err = client.CheckPin(pin); err != nil {
			return fmt.Errorf("--pin: %w", err)
		}
	}
	if *caFile != "" {
		// The profile stores the CA file as an absolute path (later
		// commands run from other directories): the prompt and the
		// lines below show that path, not the one typed.
		if *caFile, err = filepath.Abs(*caFile); err != nil {
			return fmt.Errorf("--ca: %w", err)
		}
	}
	gateID := *gateIDFlag
	if gateID != "" {
		if *caFile == "" {
			return errors.New("--gate-id binds a gate certified by a CA: give the CA with --ca (a gate without one is bound by its key, --pin)")
		}
		if _, err := client.CheckGateID(gateID); err != nil {
			return fmt.Errorf("--gate-id: %w", err)
		}
	}
	// A profile directory the login could not make the user's own, or
	// a stored pin others may have changed, is refused before anything
	// goes to the gate.
	if err := client.CheckProfile(*dir); err != nil {
		return err
	}
	stored := client.StoredPin(*dir, gate)
	r := bufio.NewReader(in)
	// confirmed: the pin or gate identity is the one the user confirmed
	// at the prompt below, not one given.
	confirmed := false
	if pin == "" && stored == "" && *caFile == "" {
		// A first login that nothing vouches for: the user checks the
		// gate's key before any credential goes to it, as ssh asks
		// before the password.
		if pin, err = confirmGateKey(gateURL, gate, *pwStdin, in, r, out); err != nil {
			return err
		}
		confirmed = true
	}
	if *caFile != "" && gateID == "" && pin == "" && stored == "" && client.StoredGateID(*dir, gate) == "" {
		// The CA vouches for every certificate it issued, not for this
		// gate: the user checks the identity the certificate names.
		if gateID, err = confirmGateIdentity(gateURL, gate, *caFile, *pwStdin, in, r, out); err != nil {
			return err
		}
		confirmed = true
	}
	if *user == "" {
		if *user, err = prompt(r, out, "user: "); err != nil {
			return err
		}
	}
	var password string
	if *pwStdin {
		line, err := r.ReadString('\n')
		if err != nil && (err != io.EOF || line == "") {
			return fmt.Errorf("read password from standard input: %w", err)
		}
		password = strings.TrimRight(line, "\r\n")
	} else {
		f, ok := in.(*os.File)
		if !ok || !term.IsTerminal(int(f.Fd())) {
			return errors.New("standard input is not a terminal: use --password-stdin")
		}
		fmt.Fprint(out, "password: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(out)
		if err != nil {
			return err
		}
		password = string(b)
	}
	if *code == "" {
		if *code, err = prompt(r, out, "TOTP code: "); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := client.Login(ctx, client.LoginOptions{Gate: gateURL, User: *user, Password: password, Code: *code, CAFile: *caFile, GateID: gateID, Pin: pin, Confirmed: confirmed, Dir: *dir})
	if err != nil {
		return err
	}
	switch {
	case pin != "" && pin != stored && stored != "":
		fmt.Fprintf(out, "pinned %s's key SHA-256 %s (replacing %s)\n", res.Gate, pin, stored)
	case pin != "" && pin != stored:
		fmt.Fprintf(out, "pinned %s's key SHA-256 %s: a change will be refused\n", res.Gate, pin)
	case res.FirstUse:
		fmt.Fprintf(out, "first connection to %s: pinned its certificate, SHA-256 of its key %s\n", res.Gate, res.Fingerprint)
		fmt.Fprintln(out, "its certificate verified with the CA given; a change of key will be refused")
	}
	if res.BoundGateID {
		fmt.Fprintf(out, "bound this profile to the gate identity %s (its certificate verified with %s): another identity will be refused, even one the CA certified\n", res.GateID, res.CAFile)
	}
	fmt.Fprintf(out, "logged in as %s until %s\n", res.User, res.NotAfter.Local().Format("2006-01-02 15:04:05 MST"))
	if res.Replaced != nil {
		reportReplaced(res.Replaced, out, errOut)
	}
	return nil
}

// reportReplaced says what became of the credential of another gate or
// user that a login replaced (a profile holds one): ended at its gate,
// expired or refused there already, or, on standard error, still valid
// there until it expires.
func reportReplaced(r *client.Replaced, out, errOut io.Writer) {
	what := fmt.Sprintf("replaced the credential of %s for %s", r.User, r.Gate)
	const perGate = "a profile holds one credential: --profile DIR keeps one for each gate"
	switch ge, refused := refusedCredential(r.Err); {
	case r.Revoked:
		fmt.Fprintf(out, "%s (%s): logged out of %s, every certificate of %s there is invalid now\n", what, perGate, r.Gate, r.User)
	case r.Expired:
		fmt.Fprintf(out, "%s, which had expired at %s\n", what, r.NotAfter.Local().Format("2006-01-02 15:04:05 MST"))
	case refused:
		fmt.Fprintf(out, "%s, which %s had already stopped accepting (%s)\n", what, r.Gate, ge.Msg)
	default:
		fmt.Fprintf(errOut, "otgate login: warning: %s (%s), but could not log out of %s (%v): it stays valid there until %s; "+
			"to end it sooner, ask the administrator of %s to run otgate admin user revoke %s\n",
			what, perGate, r.Gate, r.Err, r.NotAfter.Local().Format("2006-01-02 15:04:05 MST"), r.Gate, r.User)
	}
}

// confirmGateKey shows the key of a gate nothing vouches for and asks the
// user on the terminal whether to send credentials to it; without a
// terminal (or with --password-stdin) it refuses, naming the key to check
// and pass as --pin. It returns the confirmed pin.
func confirmGateKey(gateURL, gate string, pwStdin bool, in io.Reader, r *bufio.Reader, out io.Writer) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fp, err := client.GateFingerprint(ctx, gateURL, "")
	if err != nil {
		return "", err
	}
	f, ok := in.(*os.File)
	if pwStdin || !ok || !term.IsTerminal(int(f.Fd())) {
		return "", fmt.Errorf("first connection to %s: nothing vouches for its key, SHA-256 %s; compare it with the gate's console (the proxy's \"gate key SHA-256\" line), then log in with --pin %s (or --ca FILE); no credential was sent", gate, fp, fp)
	}
	fmt.Fprintf(out, "first connection to %s: its key has SHA-256\n  %s\ncompare it with the gate's console (the proxy's \"gate key SHA-256\" line).\n", gate, fp)
	answer, err := prompt(r, out, "send your credentials to this gate and pin its key? (yes/no): ")
	if err != nil {
		return "", err
	}
	if answer != "yes" {
		return "", fmt.Errorf("gate key not confirmed (answered %q, want yes): no credential was sent", answer)
	}
	return fp, nil
}

// confirmGateIdentity shows the gate identity that the certificate of a
// gate verified with caFile names, and asks the user on the terminal
// whether to send credentials to it and bind the profile to it; without
// a terminal (or with --password-stdin) it refuses, naming the identity
// to check and pass as --gate-id. It returns the confirmed identity.
func confirmGateIdentity(gateURL, gate, caFile string, pwStdin bool, in io.Reader, r *bufio.Reader, out io.Writer) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, _, err := client.GateIdentity(ctx, gateURL, caFile)
	if err != nil {
		return "", err
	}
	f, ok := in.(*os.File)
	if pwStdin || !ok || !term.IsTerminal(int(f.Fd())) {
		return "", fmt.Errorf("first connection to %s: its certificate verifies with %s and names the gate %s, but any gate or server that CA certified would verify too; "+
			"compare the identity with the gate's console (the \"device identity\" line), then log in with --gate-id %s; no credential was sent", gate, caFile, id, id)
	}
	fmt.Fprintf(out, "first connection to %s: its certificate verifies with %s and names the gate\n  %s\nany gate or server that CA certified would verify too: compare the identity with the gate's console (the \"device identity\" line).\n", gate, caFile, id)
	answer, err := prompt(r, out, "send your credentials to this gate and bind this profile to its identity? (yes/no): ")
	if err != nil {
		return "", err
	}
	if answer != "yes" {
		return "", fmt.Errorf("gate identity not confirmed (answered %q, want yes): no credential was sent", answer)
	}
	return id, nil
}

func prompt(r *bufio.Reader, out io.Writer, p string) (string, error) {
	fmt.Fprint(out, p)
	line, err := r.ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		return "", fmt.Errorf("read %s: %w", strings.TrimSuffix(p, ": "), err)
	}
	return strings.TrimSpace(line), nil
}
