// Package audit is the gate's tamper-evident session log.
//
// The log is a directory of append-only files (audit-00000000.log,
// audit-00000001.log, ...). Every file starts with an 8-byte magic and then
// holds framed records:
//
//	frame  = length (uint32, big endian) | crc32c(length | payload) (uint32, big endian) | payload
//	payload = deterministic CBOR of Record {seq, time, prev, kind, body}
//
// Every record carries the SHA-256 of the previous record's payload, so the
// records form one hash chain across all files. The first record of every
// file is a Rotation record; the one in the first file chains to a genesis
// value derived from the log id (see Genesis), later ones carry the previous
// file's head hash. Checkpoint records sign (log id, seq range, head hash)
// with the device identity (a crypto.Signer, the TPM key on the appliance)
// every N records, every T seconds, at every session end and on Close.
//
// # Durability
//
// Append returns only after the record's bytes are fsynced (group commit:
// concurrent appenders share one fsync, none is acknowledged before its own
// bytes are durable). The proxy appends the session-start record with
// Append and only then lets the first byte reach the asset; if Append fails
// the session is refused. A write or fsync error is sticky: every later
// append fails, because after a failed fsync the state of the page cache is
// unknown.
//
// AppendBuffered is the cheap path for payload records: the record is written
// to the file (it survives a crash of the process) but not fsynced. It
// becomes durable, in file order, at the first of: the next durable Append or
// Checkpoint by anyone (an fsync covers every earlier byte of the file), a
// rotation, Close, or the background flush that runs every FlushInterval
// (default 1 s). A power cut can therefore lose at most the buffered records
// of the last FlushInterval that no durable append has followed, and what it
// loses is always a suffix of the log: the prefix stays intact and verifiable.
//
// # Checkpoints
//
// A background goroutine signs a checkpoint when CheckpointEvery records
// are unsigned, every CheckpointInterval while any are, right after every
// SessionEnd (Append of a SessionEnd returns once the end record is
// durable; its checkpoint follows asynchronously, typically within one
// signature's time), and on Close. Writer.Checkpoint forces one and waits
// for it. Signing happens outside the append lock, so records appended
// while the TPM signs land between the signed head and the checkpoint
// record and are covered by the next checkpoint. Verify reports records not
// covered by any verified signature as the unsigned tail (Report.Unsigned):
// they are chained but anybody with write access could have appended them.
// A signer failure is reported (WithErrorHandler, or the error of
// Checkpoint) and does not stop appends.
//
// # Torn tails and corruption
//
// Only the newest file may end in a torn tail: the bytes after its last
// complete, valid record that are (a) shorter than a frame header, (b) a
// header whose declared length runs past the end of the file, (c) exactly one
// frame ending at the end of the file whose CRC does not match, or (d) all
// zero bytes. Open moves a torn tail into a side file (<name>.torn-<unix ns>),
// truncates, and appends an Event of type "log-recovered" describing it.
// Anything else (a bad CRC or length followed by more data, a broken chain, a
// seq gap, a truncated older file) is corruption: Open and Verify report it
// with file, offset and seq, and nothing is changed.
package audit
