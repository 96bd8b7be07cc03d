// Package audit is the gate's tamper-evident session log.
//
// The log is a directory of append-only files (audit-00000000.log,
// audit-00000001.log, ...). Every file starts with an 8-byte magic and then
// holds framed records:
//
//	frame  = length (uint32, big endian) | crc32c(length | payload) (uint32, big endian) | payload
//	payload = deterministic CBOR of Record {seq, time, prev, kind, body[, dev]}
//
// Every record carries the SHA-256 of the previous record's payload, so the
// records form one hash chain across all files. The first record of every
// file is a Rotation record; the one in the first file chains to a genesis
// value derived from the log id (see Genesis), later ones carry the previous
// file's head hash. Checkpoint records sign (log id, seq range, head hash)
// with the device identity (a crypto.Signer, the TPM key on the appliance)
// every N records, every T seconds, at every session end and on Close.
// Verify (`otgate audit verify`) checks all of it offline and names the
// first bad record by file, offset and seq (for a record too damaged to
// read, the seq of the good record before it).
//
// # Dev mode
//
// A gate without a TPM runs only in dev mode (the identity service's -dev,
// set by a board with TPM.None): its device key is a software key, so the
// checkpoint signatures prove much less. A Writer opened with WithDevMode
// marks every record it appends, rotation and checkpoint records included,
// with Record.Dev (CBOR key 6, true) inside the hashed envelope: the mark
// cannot be stripped without breaking the chain. The field is omitted when
// false, so logs written without dev mode keep their bytes and hashes.
// Verify counts the marked records (Report.DevRecords, DevSummary) and
// reports a log that holds both kinds as mixed (Report.DevMixed);
// `otgate audit verify` prints "DEV MODE: N records signed with a software
// key (not a TPM)" and fails under --strict; `otgate audit show` starts
// each marked record's line with "[DEV] "; the syslog export adds
// dev="true".
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
// FlushSoon shortens that for a record that matters at once (the proxy's
// record of a Modbus write about to reach the device): it starts an fsync
// in the background without anyone waiting for it, at most one every
// 200 ms.
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
// # Sealing, and how the newest file ends
//
// A log can lose its end two ways: a power cut, or somebody truncating the
// newest file. Close seals the log: it appends an Event of type
// "log-closed" (EventLogClosed) and then the checkpoint that signs it, as
// the last two records of the newest file (that checkpoint never rotates),
// and refuses appends from the moment it starts so nothing lands between
// them. Verify reports how the newest file ends (Report.End, EndFile,
// EndOffset, EndSummary):
//
//   - EndSealed: it ends with that seal: the gate closed the log here.
//   - EndUnsealed: it ends after a complete record without the seal: the
//     gate is running, or it stopped without Close, or the file was cut at
//     a record boundary (also right after a checkpoint). The records after
//     the last verified checkpoint (Report.Unsigned, from UnsignedFrom) are
//     unverified: chained, but covered by no signature.
//   - EndTorn: it ends mid-record (Report.Torn, see below).
//
// None of these is an error by default, so a running gate's log verifies.
// Trust.RequireSealed (`otgate audit verify --strict`) makes anything but
// EndSealed a *Problem wrapping ErrNotSealed that names the file and the
// offset where the unsealed part starts (the first unverified record, the
// torn bytes, or the end of the last record); use it for the log of a
// stopped gate or an archived copy. There is no grace period for a tail
// younger than the checkpoint interval: strict means sealed.
//
// Open of a log that does not end sealed appends an Event of type
// "log-recovered" (EventLogRecovered) saying where the log ended and what
// it truncated ("recovered after unclean shutdown: truncated N bytes at
// offset X of FILE ..." or "... without a log-closed record; nothing
// truncated") and kicks a checkpoint, so the gap is itself a signed record
// of the chain; Verify lists these in Report.Recoveries. Callers cannot
// append either event type (ErrInvalidBody). Open and Close of a sealed
// log with nothing appended in between add nothing (unless the log is
// anchored: each Open of an anchored log records its anchor).
//
// What sealing cannot show: a log cut back exactly to an earlier clean
// close (the gate reopened it and wrote more later), or a whole directory
// put back from an earlier copy, ends sealed. The log alone cannot tell.
// An anchored log (WithAnchor: on the gate, a TPM counter that only goes
// forward) records the counter's next value at every Open and Close before
// advancing it, so such a log ends behind the counter: the next Open
// records an "anchor-mismatch" event, and Verify with Trust.Anchor fails
// it (see Anchor). Without an anchor (dev mode), compare the last seq and
// head (Report.LastSeq, Head) with a copy held elsewhere, such as the SIEM
// export (audit/syslog).
//
// # Retention
//
// With WithRetention the log stays within a budget by removing its oldest
// files, whole, once every record in them is signed and Removable allows
// it (the proxy: acknowledged by the syslog receiver). Before a file goes
// the log appends a "log-pruned" event (EventLogPruned, Event.Pruned:
// the file, its seq range, the hash of its last record) and has a
// checkpoint sign it; only then is the file removed. Verify accepts a log
// whose oldest files are missing only when such a signed record of the
// log names the file just before the first one present, with that file's
// last seq and hash (Report.PrunedFiles); any other gap is an error
// unless Trust.AllowPartial. Verify of a running gate's log starts over
// from the new oldest file when the oldest file it listed is removed
// before it reads it. A file that cannot go yet stays and the log
// grows past its budget (StorageState says why). Below Retention.Reserve
// of free space a SessionStart is refused (ErrStorageFull).
//
// # Torn tails and corruption
//
// Only the newest file may end in a torn tail: the bytes after its last
// complete, valid record that are (a) shorter than a frame header, (b) a
// header whose declared length runs past the end of the file (unless a
// complete record whose length matches the header's CRC follows it: that
// is a damaged length field, corruption), (c) exactly one
// frame ending at the end of the file whose CRC does not match, or (d) all
// zero bytes. A newest file without a complete rotation record is never a
// torn write (a file is made visible only with it, see startFile) and is
// corruption. Open moves a torn tail into a side file (<name>.torn-<unix ns>),
// truncates, and appends the "log-recovered" event describing it (above).
// Verify reports a torn tail as EndTorn, an error only with RequireSealed.
// Anything else (a bad CRC or length followed by more data, a broken chain, a
// seq gap, a truncated older file) is corruption: Open and Verify report it
// with file, offset and seq, and nothing is changed.
package audit
