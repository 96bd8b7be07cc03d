// Package syslog exports audit log records to a SIEM as RFC 5424 syslog
// messages over TCP with octet-counting framing (RFC 6587) or over TLS
// (RFC 5425).
//
// Every message carries the record's seq and hash (and session id, user,
// asset where known) as structured data, under the SD-ID otgate@32473
// (32473 is the example enterprise number of RFC 5612; a deployment with
// its own private enterprise number should change SDID). A record written
// in dev mode (audit.Record.Dev: no TPM, a software key signs the log)
// also carries dev="true".
//
// # Delivery
//
// Plain syslog has no acknowledgements, so the exporter uses the next
// best thing: after writing a batch it waits until the kernel reports the
// socket's send queue empty (SIOCOUTQ = 0: every byte was acknowledged by
// the receiver's TCP), and only then moves its cursor (the last exported
// seq, log id and hash, written atomically: temp file, fsync, rename,
// fsync dir). After a broken connection or a restart it resends from the
// record after the cursor. Nothing is skipped; a record can be sent twice
// (at-least-once), and the seq and hash in the structured data let the
// SIEM drop duplicates. A receiver that crashes with acknowledged bytes
// still in its socket buffer can lose them: that is outside what TCP
// syslog can tell a sender.
//
// The log's retention removes its oldest files (on the gate only once
// they are exported). When the file of the cursor's record is gone, the
// exporter goes on at the first record after it in the oldest file left
// (checked to chain to the cursor when it follows it directly), and the
// same when the file it is reading goes under it. Records the retention
// removed before they were exported are never skipped silently: the
// receiver gets a message with event="export-gap" (EventExportGap)
// saying how many, and which seqs, were lost to retention before export,
// and OnError hears it.
//
// Records of a session after its start carry the user and asset of the
// start. The exporter keeps them for the open sessions (dropped at the
// session's end, and all at a log-closed or log-recovered event) and saves
// them in the same atomic write as the cursor, so an exporter restarted in
// the middle of a session labels its later records as before. Right after
// a log-recovered record (the gate stopped without a clean shutdown) the
// receiver gets, for each session open then, a message with
// event="session-cut" (EventSessionCut, FormatCut) naming the session, its
// user and asset and the recovery's seq: that session's end will never
// come, and a SIEM that pairs starts with ends can close it.
//
// Records are exported once they are Config.MinAge old (default 2 s), by
// which time the writer's periodic flush has made them durable; a record
// that a power cut took back is thus not exported. If it happens anyway (a
// writer process that died before its flush, then a power cut), the
// rewritten seq no longer matches the cursor's hash: the exporter sets the
// cursor aside and sends the log again from its oldest record (below).
//
// # When the export cannot go on
//
// The exporter never stops by itself (see Exporter.Run for the details):
//
//   - receiver unreachable, a batch not acknowledged: reconnect after
//     Config.RetryDelay, doubled up to 30 s;
//   - a damaged record in the log (framing, CRC, encoding, chain): the
//     records before it are sent, the damage is reported with its file,
//     offset and seq at every try, and the exporter tries again from its
//     cursor after Config.StuckRetry (30 s), doubled up to
//     Config.StuckRetryMax (10 min), so a repaired log resumes with
//     nothing skipped; the same for a cursor that cannot be written;
//   - a cursor that does not belong to the log (another log id, another
//     record at its seq, a seq past the end of the log, undecodable): it
//     is kept as <cursor>.stale-<UTC time> and the export starts again
//     from the oldest record, through Config.OnReset (the proxy records
//     it as an audit event of type EventExportReset, which the SIEM then
//     receives too).
//
// Config.OnStatus hears while the export is held up and when it moves
// again; the proxy shows it in its status row.
package syslog
