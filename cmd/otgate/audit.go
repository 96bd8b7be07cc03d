package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/inspect/modbus"
)

func init() {
	register(command{name: "audit", summary: "verify or show a session log (audit verify|show DIR)",
		run: func(args []string) error { return runAudit(args, os.Stdout) }})
}

const auditUsage = `usage:
  otgate audit verify (--key pubkey.pem | --cert cert.pem | --chain-only) [--log-id ID] [--allow-partial] [--require-signed] DIR
  otgate audit show [--session ID] DIR`

func runAudit(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(auditUsage)
	}
	switch args[0] {
	case "verify":
		return runAuditVerify(args[1:], out)
	case "show":
		return runAuditShow(args[1:], out)
	}
	return fmt.Errorf("unknown audit command %q\n%s", args[0], auditUsage)
}

func oneDir(fs *flag.FlagSet) (string, error) {
	if fs.NArg() != 1 {
		return "", fmt.Errorf("want exactly one log directory after the flags, got %d arguments\n%s", fs.NArg(), auditUsage)
	}
	return fs.Arg(0), nil
}

func runAuditVerify(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("otgate audit verify", flag.ContinueOnError)
	keyPath := fs.String("key", "", "PEM public key of the device identity that signs checkpoints")
	certPath := fs.String("cert", "", "PEM certificate of the device identity (its key is used; its validity is not checked)")
	chainOnly := fs.Bool("chain-only", false, "check framing and the hash chain only, no signatures")
	logID := fs.String("log-id", "", "the log id the files must carry")
	partial := fs.Bool("allow-partial", false, "accept a log whose oldest files were removed")
	requireSigned := fs.Bool("require-signed", false, "fail if records after the last checkpoint are not covered by a signature")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := oneDir(fs)
	if err != nil {
		return err
	}
	trust := audit.Trust{ChainOnly: *chainOnly, LogID: *logID, AllowPartial: *partial}
	switch {
	case *keyPath != "" && *certPath != "":
		return errors.New("give --key or --cert, not both")
	case *keyPath != "" || *certPath != "":
		path := *keyPath + *certPath
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if trust.PublicKey, err = audit.ParseTrustPEM(b, path); err != nil {
			return err
		}
	case !*chainOnly:
		return fmt.Errorf("no trust anchor: give --key or --cert to check checkpoint signatures, or --chain-only\n%s", auditUsage)
	}
	rep, verr := audit.Verify(dir, trust)
	if rep != nil {
		printReport(out, dir, rep)
	}
	if verr != nil {
		return fmt.Errorf("%s: first bad record: %w", dir, verr)
	}
	if *requireSigned && rep.Unsigned > 0 {
		return fmt.Errorf("%s: %d records after seq %d are not covered by a checkpoint signature", dir, rep.Unsigned, rep.SignedThrough)
	}
	fmt.Fprintln(out, "OK")
	return nil
}

func printReport(out io.Writer, dir string, r *audit.Report) {
	fmt.Fprintf(out, "log %s (id %q): %d records, %d bytes in %d files", dir, r.LogID, r.Records, r.Bytes, r.Files)
	if r.Records > 0 {
		fmt.Fprintf(out, ", seq %d..%d, head %s", r.FirstSeq, r.LastSeq, r.Head)
	}
	fmt.Fprintln(out)
	switch {
	case !r.SignaturesChecked:
		fmt.Fprintf(out, "checkpoints: %d (signatures NOT checked: chain-only)\n", r.Checkpoints)
	case r.Signed:
		fmt.Fprintf(out, "checkpoints: %d, signatures good, signed through seq %d\n", r.Checkpoints, r.SignedThrough)
	default:
		fmt.Fprintf(out, "checkpoints: %d, no signed checkpoint yet\n", r.Checkpoints)
	}
	if r.SignaturesChecked && r.Unsigned > 0 {
		fmt.Fprintf(out, "unsigned tail: %d records not yet covered by a checkpoint signature\n", r.Unsigned)
	}
	if r.Torn != nil {
		fmt.Fprintf(out, "torn tail (interrupted write, not an error; the writer truncates it on open): %s\n", r.Torn)
	}
}

func runAuditShow(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("otgate audit show", flag.ContinueOnError)
	session := fs.String("session", "", "show only the records of this session id")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := oneDir(fs)
	if err != nil {
		return err
	}
	return audit.Show(out, dir, audit.ShowOptions{Session: *session, Formatters: transcriptFormatters})
}

// transcriptFormatters render decoded protocol payloads as the inspector's
// transcript line with the user and asset of the session's start record,
// e.g. "14:03:04.120 alice plc-7 unit 1 write holding 52 = 55 -> ok
// (1.2 ms)" (times in UTC, like every other line of the transcript).
// Records written before the structured fields carry the line itself in
// Decoded.Detail["text"].
var transcriptFormatters = map[string]audit.PayloadFormatter{
	"modbus": func(p audit.Payload, start *audit.SessionStart) (string, bool) {
		if t := p.Decoded.Detail["text"]; t != "" {
			return t, true
		}
		r, err := modbus.RecordOf(p)
		if err != nil {
			return "", false // the generic decoded rendering
		}
		var user, asset string
		if start != nil {
			user, asset = start.User, start.Asset
		}
		return string(r.AppendText(nil, user, asset)), true
	},
}
