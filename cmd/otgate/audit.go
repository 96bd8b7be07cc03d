package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/inspect/modbus"
	"github.com/otgate/otgate/services/identity/api"
)

func init() {
	register(command{name: "audit", summary: "verify or show a session log (audit verify|show DIR)",
		run: func(args []string) error { return runAudit(args, os.Stdout) }})
}

const auditUsage = `usage:
  otgate audit verify (--key pubkey.pem | --cert cert.pem | --chain-only) [--log-id ID] [--allow-partial] [--require-signed] [--anchor N|device] [--strict] DIR
  otgate audit show [--session ID] DIR`

// auditVerifyHelp is printed by otgate audit verify -h.
const auditVerifyHelp = `verify checks framing, the hash chain across files and every checkpoint
signature, names the first bad record (file, offset, seq), and says how the
newest file ends:
  sealed    the gate closed the log cleanly: a log-closed record and the
            checkpoint signing it are the last records
  unsealed  complete records but no seal: the gate is running, or it stopped
            without closing the log (crash, power cut), or the file was cut
            at a record boundary or newer files were removed; records
            after the last checkpoint are
            listed as unverified (no signature covers them)
  torn      the newest file ends mid-record: an interrupted write, or a
            truncation
Without --strict an unsealed or torn end is reported and verify still
succeeds; with --strict it fails naming the file and offset. Use --strict on
the log of a stopped gate or on an archived copy: a running gate's log is
never sealed. Every unclean shutdown the gate found when it reopened the log
is listed ("recovered after unclean shutdown"): a record in the chain,
signed by the checkpoint after it. A sealed end proves the gate closed the log there, not that nothing was
written after a later reopen. A gate with a TPM anchors its log: every open
and clean close records the TPM counter's next value before advancing it, so
a log put back from an earlier copy or cut back to an earlier close ends
behind the counter. --anchor N (the value "otgate identity status" prints on
the gate) or --anchor device (on the gate) fails such a log; the gate itself
records an "anchor-mismatch" the next time it opens one, listed as ANCHOR
ALARM. Without a TPM, compare the last seq and head with a copy held
elsewhere (the SIEM export).
A gate removes its log's oldest files when the log is over its budget
(otgate-proxy -audit-max-mib; only files signed, and exported when a syslog
receiver is configured), each after a signed "log-pruned" record naming it:
verify accepts a log that starts after files its own records say were
removed, and reports them; a log missing files no such record names fails
(--allow-partial accepts it). verify may run on a running gate's log: when
the gate removes the oldest file after verify listed it, verify starts again
from the new oldest file; any other file that vanishes fails, named.
Records a gate without a TPM wrote in dev mode are marked in the chain:
verify reports "DEV MODE: N records signed with a software key (not a TPM)"
(and a log mixing dev-mode and TPM records as MIXED); --strict fails on
them. show starts the line of each such record with "[DEV]".`

func runAudit(args []string, out io.Writer) error {
	if len(args) == 0 {
		return usagef("%s", auditUsage)
	}
	switch args[0] {
	case "verify":
		return runAuditVerify(args[1:], out)
	case "show":
		return runAuditShow(args[1:], out)
	}
	return usagef("unknown audit command %q\n%s", args[0], auditUsage)
}

func oneDir(fs *flag.FlagSet) (string, error) {
	if fs.NArg() != 1 {
		return "", usagef("want exactly one log directory after the flags, got %d arguments\n%s", fs.NArg(), auditUsage)
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
	anchorFlag := fs.String("anchor", "", "the device's audit anchor counter (as otgate identity status prints it on the gate), or \"device\" to read it from the identity service here (on the gate, root): fail if the log ends behind it (rolled back, cut back, replaced)")
	strict := fs.Bool("strict", false, "fail, naming file and offset, unless the newest file ends sealed by a clean close (not unsealed, not torn); fail on records written in dev mode (software key, no TPM)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s\n\n%s\n\nflags of verify:\n", auditUsage, auditVerifyHelp)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	dir, err := oneDir(fs)
	if err != nil {
		return err
	}
	trust := audit.Trust{ChainOnly: *chainOnly, LogID: *logID, AllowPartial: *partial, RequireSealed: *strict}
	if *anchorFlag != "" {
		v, err := anchorValue(*anchorFlag)
		if err != nil {
			return err
		}
		trust.Anchor = &v
	}
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
		return usagef("no trust anchor: give --key or --cert to check checkpoint signatures, or --chain-only\n%s", auditUsage)
	}
	rep, verr := audit.Verify(dir, trust)
	if rep != nil {
		printReport(out, dir, rep)
	}
	// devErr: under --strict, dev-mode records fail verify (a software
	// key signed them: no TPM vouches for this log).
	var devErr string
	if *strict && rep != nil && rep.DevRecords > 0 {
		devErr = rep.DevSummary() + " (--strict accepts only a log signed by a TPM)"
	}
	if verr != nil {
		if devErr != "" {
			return fmt.Errorf("%s: first bad record: %w; and %s", dir, verr, devErr)
		}
		return fmt.Errorf("%s: first bad record: %w", dir, verr)
	}
	if devErr != "" {
		return fmt.Errorf("%s: %s", dir, devErr)
	}
	if *requireSigned && rep.Unsigned > 0 {
		return fmt.Errorf("%s: %d records from seq %d on are not covered by a checkpoint signature", dir, rep.Unsigned, rep.UnsignedFrom)
	}
	if rep.DevRecords > 0 {
		fmt.Fprintln(out, "OK as a DEV MODE log: signed with a software key, not a TPM (--strict makes this an error)")
		if rep.End != audit.EndSealed {
			fmt.Fprintln(out, "the end reported above is NOT sealed (--strict makes this an error)")
		}
		return nil
	}
	if rep.End != audit.EndSealed {
		fmt.Fprintln(out, "OK up to the end reported above, which is NOT sealed (--strict makes this an error)")
		return nil
	}
	fmt.Fprintln(out, "OK")
	return nil
}

// anchorValue reads --anchor: a number, or "device" for the counter the
// identity service on this gate reads from its TPM.
func anchorValue(s string) (uint64, error) {
	if s != "device" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("--anchor %q: want the counter's decimal value or \"device\"", s)
		}
		return v, nil
	}
	c, err := api.Dial(api.DefaultSocket)
	if err != nil {
		return 0, fmt.Errorf("--anchor device: %w", err)
	}
	defer c.Close()
	v, defined, err := c.AuditAnchor()
	if err != nil {
		return 0, fmt.Errorf("--anchor device: %w", err)
	}
	if !defined {
		return 0, errors.New("--anchor device: the TPM's audit anchor counter was never advanced: no log was anchored on this gate")
	}
	return v, nil
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
		fmt.Fprintf(out, "UNVERIFIED: %d records from seq %d on are covered by no checkpoint signature (chained, but anybody with write access could have written them)\n", r.Unsigned, r.UnsignedFrom)
	}
	for _, rc := range r.Recoveries {
		fmt.Fprintf(out, "unclean shutdown recorded at %s offset %d seq %d: %s\n", rc.File, rc.Offset, rc.Seq, rc.Reason)
	}
	if r.RecoveriesNotListed > 0 {
		fmt.Fprintf(out, "... and %d more unclean shutdowns recorded after these (not listed)\n", r.RecoveriesNotListed)
	}
	if r.PrunedFiles > 0 {
		fmt.Fprintf(out, "retention: the gate removed the %d oldest files (its log-pruned record at seq %d names the last of them); the log starts at seq %d\n",
			r.PrunedFiles, r.PrunedRecordSeq, r.FirstSeq)
	}
	if r.Restarts > 0 {
		fmt.Fprintf(out, "retention: the gate removed the oldest file %d times while verify read the log; verified again from the oldest file left\n", r.Restarts)
	}
	if r.HasAnchor {
		fmt.Fprintf(out, "anchor: last anchored at %d (seq %d)\n", r.Anchor, r.AnchorSeq)
	}
	for _, a := range r.AnchorAlarms {
		fmt.Fprintf(out, "ANCHOR ALARM recorded at %s offset %d seq %d: %s\n", a.File, a.Offset, a.Seq, a.Reason)
	}
	if r.AlarmsNotListed > 0 {
		fmt.Fprintf(out, "... and %d more anchor alarms (not listed)\n", r.AlarmsNotListed)
	}
	if r.End != 0 {
		fmt.Fprintf(out, "end: %s\n", r.EndSummary())
	}
	if d := r.DevSummary(); d != "" {
		fmt.Fprintln(out, d)
	}
}

func runAuditShow(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("otgate audit show", flag.ContinueOnError)
	session := fs.String("session", "", "show only the records of this session id")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	dir, err := oneDir(fs)
	if err != nil {
		return err
	}
	return audit.Show(out, dir, audit.ShowOptions{Session: *session, Formatters: transcriptFormatters, Pairers: transcriptPairers})
}

// transcriptFormatters render decoded protocol payloads as the inspector's
// transcript line with the user and asset of the session's start record,
// e.g. "14:03:04.120 alice plc-7 unit 1 write holding 52 = 55 -> ok
// (1.2 ms)" (times in UTC, like every other line of the transcript).
// Records written before the structured fields carry the line itself in
// Decoded.Detail["text"]. A Modbus record of a request made before it was
// forwarded is shown only when nothing completes it (transcriptPairers),
// as "... -> forwarded, no response recorded (gate stopped?)".
var transcriptFormatters = map[string]audit.PayloadFormatter{
	"modbus": func(p audit.Payload, start *audit.SessionStart) (string, bool) {
		var user, asset string
		if start != nil {
			user, asset = start.User, start.Asset
		}
		return modbus.TranscriptLine(p, user, asset)
	},
}

// transcriptPairers pair a Modbus write's record made before forwarding
// with the record of its response, so that show prints each write once.
var transcriptPairers = map[string]audit.PayloadPairer{"modbus": modbus.PairKey}
