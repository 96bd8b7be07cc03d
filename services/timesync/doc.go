// Package timesync is the gate's time service: an SNTP client, with
// Network Time Security (NTS, RFC 8915) when the site file names NTS
// servers, that keeps the system clock, and the hardware clock, in step
// with the time servers on the uplink side. Everything security-relevant
// on the gate depends on the clock: TOTP codes (±30 s), certificate
// validity, time-window grants and the audit log's timestamps. An
// industrial PC's RTC drifts seconds a day; without this service the gate
// stops accepting logins after a few months.
//
//   - Servers: the applied site policy's uplink.nts servers (NTS, below),
//     else its uplink.ntp list (site/uplink.go), read again at every poll,
//     so a policy applied later takes effect at the next poll; -server
//     overrides both for development (plain NTP). With neither, the
//     service falls back to the NTP servers of the uplink's DHCP lease
//     (option 42, read from netconf's status at every poll: LeaseNTP);
//     the site file's list wins, as a DHCP server is unauthenticated too.
//     The lease's servers obey the site file's rule for uplink.ntp (time
//     from the uplink side only): one in a zone's subnet or the overlay
//     prefix is not used, and the status says so.
//     With none from either, the service says so once (log and status)
//     and does nothing else. An applied policy that cannot be read is
//     not "none": it may name NTS servers, so the lease is not asked
//     and the service has no servers until the policy reads again.
//   - NTS (nts.go, github.com/beevik/nts): with uplink.nts named, those
//     servers are the only ones: no plain NTP, not the DHCP lease's (an
//     attacker on the uplink could otherwise force the downgrade by
//     blocking port 4460); a server whose key exchange or reply fails
//     authentication is dropped from the poll like one that does not
//     answer, and everything below applies to the authenticated offsets.
//     The key exchange's TLS certificate must chain to the site file's CA
//     (uplink.nts.ca; the gate has no CA bundle) and name the server (its
//     DNS name, or its address as an IP subjectAltName). Before the first
//     sync of the boot the certificates' validity times are not compared
//     with the clock, as chrony's nocerttimecheck: a gate whose RTC says
//     2020 could otherwise never verify a certificate issued since, and
//     NTS is what is to set its clock; the chain, the name and a common
//     instant of validity are still checked, the chain must not have
//     expired before the clock floor (below: an old certificate the
//     site CA once signed cannot set a booting gate's clock back into
//     its validity), the time a server sends must lie in its chain's
//     validity (an expired certificate cannot vouch for a later time;
//     the next poll runs a new key exchange) and not before the floor,
//     and once the clock was synchronised this boot the times are
//     checked against it, the session's too: a session whose chain is
//     no longer valid at the clock (expired since its key exchange, or
//     made before the first sync) is replaced by a new key exchange,
//     which sees a renewed certificate. Every
//     reply must carry the query's unique identifier under an
//     authenticator the session's key verifies (a plain or stripped reply
//     is ignored). A session's keys and cookies serve the polls; when the
//     cookies are used up (replies lost) or the server refuses them (NTS
//     NAK), a new key exchange; a failed key exchange is retried after
//     RetryMin, doubling up to RetryMax. Log lines and the status note
//     name NTS servers "nts host:port" and say why one was dropped
//     (certificate not trusted, key exchange refused, auth failed on a
//     reply, no authenticated reply).
//   - Each poll queries every server (github.com/beevik/ntp), drops the
//     replies that fail the library's Validate (kiss-o'-death, stratum 0
//     or 16, unsynchronised leap indicator, stale reference, root distance
//     too large), and picks the offset by agreement (Select): the median
//     of the valid ones; with three or more, those farther than Agreement
//     from it are outliers and a majority must remain; two that disagree
//     by more than Agreement are not used at all.
//   - The clock floor (floor.go), as systemd-timesyncd's clock file: the
//     last time the gate knew was right, in /perm/timesync/clock
//     (-clock-file; written atomically after the first sync of a boot
//     and each step, then at most hourly while synced, and at a clean
//     stop while synced). At start, before the first sync of the boot, a
//     clock behind the floor (a dead RTC battery, a VM without an RTC:
//     1970, 2000) is stepped forward to it at once, logged ("clock behind
//     the last known time ...: set to it") and said in the status until
//     the first sync; without a usable file (none yet, damaged) the floor
//     is BuildFloor, a date this source was built after. Before the
//     first sync no server, NTS or plain NTP (the DHCP lease's too), may
//     set the clock below the floor: its sample is not used, an NTS
//     chain that expired before the floor is refused at the key
//     exchange, and the status says "REFUSED below the floor"; `otgate
//     time step` (approval.go) lifts the floor for that first sync, and
//     the file then gets the new time. The file is not authenticated:
//     whoever can write /perm can move a booting gate's clock forward,
//     not back; a file's time more than MaxFloorAhead (20 years) after
//     BuildFloor is ignored and said, and a floor wrongly ahead below
//     that makes the servers refused until an administrator approves the
//     step back (or removes the file and restarts the service).
//   - The first sync of a boot steps the clock when the offset exceeds
//     StepThreshold (0.5 s), else slews it. "This boot" is a marker under
//     /run (tmpfs): a restart of the service does not make the next offset
//     a first one. After the first sync the clock is only slewed, and an
//     offset above PanicThreshold (1000 s, like ntpd's panic threshold) is
//     refused with a loud log line and status, never applied: plain NTP
//     is unauthenticated, and someone on the uplink must not be able to
//     move a synced gate's clock by hours (they can still delay a sync or
//     bias it by less than the threshold, slowly, unless the site names
//     NTS servers; with NTS they can still delay or block a sync, and the
//     threshold guards against a broken or compromised server).
//   - Slewing: offsets up to 0.5 s go to the kernel's PLL (adjtimex
//     ADJ_OFFSET, which also learns the clock's frequency error); larger
//     ones (after the first sync) are slewed at the kernel's 500 ppm
//     (ADJ_OFFSET_SINGLESHOT: 1.8 s an hour), never stepped.
//   - The hardware clock (/dev/rtc0, UTC) is written after each step or
//     first sync and then hourly while synced, so the next boot starts
//     close. No /dev/rtc0: said once, not retried (the clock floor still
//     keeps the next boot from starting in 1970).
//   - Polling: every PollMin (64 s), doubling while the offset stays small
//     up to PollMax (1024 s); after a failed poll the retry starts at
//     RetryMin (8 s) and doubles up to RetryMax (256 s): servers that are
//     down are not hammered, and a gate whose uplink comes back late
//     still syncs within minutes. SIGHUP polls at once.
//
// Every step, slew and refusal is logged with the old and new time and
// the servers used; the current state is the service's status note in
// init's table (`otgate status`).
//
// Confinement (confine.go): it parses what the uplink's servers send, so
// once started (timesyncd, after it dropped all capabilities but
// CAP_SYS_TIME) it confines itself with Landlock (sandbox.RestrictFiles)
// to the files Service.Confinement names, and refuses to run unconfined:
// write its clock file's directory (/perm/timesync) and the marker's and
// the approval's (/run/otgate/timesync, its own),
// read the policy's directory, /etc (the resolver's files) and the
// hardware clock if there is one (set by ioctl, which Landlock version 2
// does not restrict). Not the TPM, another service's state or a binary.
package timesync
