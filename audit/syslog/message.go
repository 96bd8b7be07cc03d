package syslog

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/otgate/otgate/audit"
)

// SDID is the structured-data id of otgate's parameters.
const SDID = "otgate@32473"

const (
	facilityLogAudit = 13
	severityWarning  = 4
	severityNotice   = 5
)

// Format renders one record as an RFC 5424 message (without framing).
// known supplies user and asset for records of sessions started earlier.
func Format(e audit.Entry, logID, hostname, appName string, known map[string]Labels) string {
	return FormatWith(e, logID, hostname, appName, known, nil)
}

// FormatWith is Format with payload formatters by protocol (as
// Config.Formatters): a decoded payload of a protocol with one is sent as
// its line (for Modbus the transcript line, "... unit 1 write holding 52
// = 55 -> ok (1.2 ms)"), given the user and asset known for its session;
// a formatter that declines it, or none, gives the generic rendering.
func FormatWith(e audit.Entry, logID, hostname, appName string, known map[string]Labels, formatters map[string]audit.PayloadFormatter) string {
	sev := severityNotice
	params := [][2]string{{"log", logID}, {"seq", strconv.FormatUint(e.Record.Seq, 10)},
		{"hash", e.Hash.String()}, {"kind", e.Record.Kind.String()}}
	if e.Record.Dev {
		// Written in dev mode: no TPM, a software key signs the log.
		params = append(params, [2]string{"dev", "true"})
	}
	add := func(k, v string) {
		if v != "" {
			params = append(params, [2]string{k, v})
		}
	}
	switch b := e.Body.(type) {
	case audit.SessionStart:
		add("session", b.SessionID)
		add("user", b.User)
		add("asset", b.Asset)
		add("protocol", b.Protocol)
		add("rule", b.Rule)
		add("source", b.Source)
	case audit.Event:
		sev = severityWarning
		add("event", b.Type)
		add("session", b.SessionID)
		add("user", b.User)
		add("asset", b.Asset)
		add("source", b.Source)
	default:
		if id := audit.SessionOf(b); id != "" {
			add("session", id)
			if s, ok := known[id]; ok {
				add("user", s.User)
				add("asset", s.Asset)
			}
		}
	}
	var sd strings.Builder
	sd.WriteString("[" + SDID)
	for _, p := range params {
		sd.WriteString(" " + p[0] + `="` + escapeParam(p[1]) + `"`)
	}
	sd.WriteString("]")
	ts := e.Record.Time.Time().Format("2006-01-02T15:04:05.000000Z")
	msg := audit.FormatBody(e.Record.Time, e.Body, audit.ShowOptions{})
	if p, ok := e.Body.(audit.Payload); ok && p.Decoded != nil {
		if f := formatters[p.Decoded.Protocol]; f != nil {
			l := known[p.SessionID]
			if line, ok := f(p, &audit.SessionStart{SessionID: p.SessionID, User: l.User, Asset: l.Asset}); ok {
				msg = "session " + p.SessionID + " " + line
			}
		}
	}
	msg = strings.NewReplacer("\n", " ", "\r", " ").Replace(msg)
	return fmt.Sprintf("<%d>1 %s %s %s - %s %s %s", facilityLogAudit*8+sev, ts, header(hostname, 255),
		header(appName, 48), header(e.Record.Kind.String(), 32), sd.String(), msg)
}

// FormatGap renders the RFC 5424 message that says records first..last
// of log logID were removed by the log's retention before they were
// exported: the receiver never gets them. at is the time of the message.
func FormatGap(logID string, first, last uint64, hostname, appName string, at time.Time) string {
	n := last - first + 1
	sd := fmt.Sprintf("[%s log=\"%s\" event=\"%s\" first=\"%d\" last=\"%d\" lost=\"%d\"]",
		SDID, escapeParam(logID), EventExportGap, first, last, n)
	msg := fmt.Sprintf("%d records of log %s (seq %d to %d) were removed by the log's retention before they were exported: the receiver does not get them", n, logID, first, last)
	return derived("gap", sd, msg, hostname, appName, at)
}

// derived renders a warning the exporter adds of its own (no record of
// the log is behind it): MSGID msgid, structured data sd, text msg.
func derived(msgid, sd, msg, hostname, appName string, at time.Time) string {
	msg = strings.NewReplacer("\n", " ", "\r", " ").Replace(msg)
	return fmt.Sprintf("<%d>1 %s %s %s - %s %s %s", facilityLogAudit*8+severityWarning, at.UTC().Format("2006-01-02T15:04:05.000000Z"),
		header(hostname, 255), header(appName, 48), header(msgid, 32), sd, msg)
}

// FormatCut renders the RFC 5424 message that says session id (user and
// asset l) of log logID never got an end record: the gate stopped without
// a clean shutdown, and the log's recovery is its record seq. A SIEM that
// pairs session starts with ends can close the session on it. at is the
// time of the message.
func FormatCut(logID string, seq uint64, id string, l Labels, hostname, appName string, at time.Time) string {
	sd := fmt.Sprintf("[%s log=\"%s\" event=\"%s\" session=\"%s\"", SDID, escapeParam(logID), EventSessionCut, escapeParam(id))
	if l.User != "" {
		sd += fmt.Sprintf(" user=\"%s\"", escapeParam(l.User))
	}
	if l.Asset != "" {
		sd += fmt.Sprintf(" asset=\"%s\"", escapeParam(l.Asset))
	}
	sd += fmt.Sprintf(" recovery=\"%d\"]", seq)
	msg := fmt.Sprintf("session %s has no end record: the gate stopped without a clean shutdown (the log's recovery, seq %d, follows its last record)", id, seq)
	return derived("cut", sd, msg, hostname, appName, at)
}

// Frame adds RFC 6587 octet-counting framing.
func Frame(msg string) []byte { return []byte(strconv.Itoa(len(msg)) + " " + msg) }

// escapeParam escapes a PARAM-VALUE (RFC 5424 section 6.3.3).
func escapeParam(v string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`).Replace(v)
}

// header makes a header field PRINTUSASCII, non-empty and bounded.
func header(v string, max int) string {
	b := []byte(v)
	out := b[:0]
	for _, c := range b {
		if c >= 33 && c <= 126 {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return "-"
	}
	if len(out) > max {
		out = out[:max]
	}
	return string(out)
}
