// Package ruleset turns a Spec (the gate's interfaces, the proxy's identity,
// the assets and the exceptions) into the gate's nftables ruleset and puts it
// into the kernel as one atomic batch.
//
// The gate owns exactly one table, "inet otgate". Every change deletes and
// recreates that table inside a single netlink batch (one nftables.Conn
// Flush), so the kernel switches from the old ruleset to the new one in one
// step: there is never a moment without the deny rules, and tables owned by
// anything else are never touched. Rules stay in the kernel when the process
// that installed them exits.
//
// The layering:
//
//   - spec.go: what the caller wants (Spec, BaselineSpec) and its validation;
//   - desired.go: a pure description of the table (sets, chains, rules with a
//     name each) computed from a Spec at a given time;
//   - apply.go: writes a description to the kernel in one batch;
//   - observe.go: reads the table back and compares it (drift);
//   - report.go: reads the monitor-mode and exception counters.
//
// # Zone modes as verdict maps
//
// What happens to a packet toward an asset that nothing earlier allowed
// depends on its zone's mode. That is one lookup in the verdict map
// asset_verdicts (ipv4_addr : verdict), one element per asset: "jump
// enforce_drop" (a chain with one counted drop) for an enforce zone, "jump
// would_block" (accept, record, log) for a monitor zone. The forward and
// to_ot chains share it ("ip daddr vmap @asset_verdicts"); forward also
// looks the source up in asset_src_verdicts, which holds only the
// monitor-zone assets ("jump would_block"): an enforce-zone source, or an
// address that is no asset, finds no element and goes on to the chain's
// counted drop. The per-packet cost is one hash lookup whatever the number
// of assets and zones. Map elements name chains, so Apply adds them after
// the chains and before the rules; the drift check compares each element's
// verdict, not only its key.
//
// An enforce zone stays enforced whatever the other zones' modes. Between
// the destination lookup and the source lookup, forward drops (counted)
// a packet leaving through an interface that carries an enforce zone
// ("forward/to-enforce-interface": oifname in the constant set
// enforce_ifaces, Spec.EnforceInterfaces): a monitor-zone asset reaches no
// host there that is not a declared asset, while a declared asset keeps
// its own verdict and the replies of "forward/monitor-replies", earlier,
// still pass. An interface carrying an enforce and a monitor zone is one
// of them, and so is one carrying no zone (sitespec: fail closed). The set is constant: only the batch that creates
// the table fills it.
//
// would_block accepts replies first (ct direction reply: nothing to
// record) and sets WouldBlockCtMark in the conntrack mark of every flow it
// admits. The reply of a flow from an enforce-zone asset to a monitor-zone
// asset is toward an enforce-zone asset, which asset_verdicts sends to
// enforce_drop; so forward first looks up the source of a reply of a
// marked flow in asset_src_verdicts ("forward/monitor-replies"): from a
// monitor-zone asset it goes to would_block and is accepted there. A new
// flow of the monitor-zone asset is no reply and has no mark; a marked
// flow whose replier's zone no longer monitors finds no element.
//
// # Exceptions
//
// An exception passes its flow in the direction written (ct direction
// original, the packet's own flow key in the set exceptions) and that
// flow's replies (ct direction reply, the key read backwards), and the ICMP
// errors about either: destination unreachable (fragmentation needed among
// them, so path MTU discovery works), time exceeded and parameter problem
// (the set icmp_errors). Conntrack gives such an error the entry of the
// flow whose packet it quotes (ct state related) and the direction the
// error travels; the rules read the quoted packet's flow key (an IPv4
// header without options, then the ports: forward when the error travels
// toward the flow's source, backwards when toward its destination) and
// look it up in the exceptions like the flow's own packets. An error of a
// flow that is no exception's (or no longer: the element expired), a
// redirect or source quench, anything else related, is not let through.
//
// # Proxy identity
//
// Packets toward the OT side are allowed only from the proxy's own sockets:
// "meta skuid" equal to the proxy's uid and, when Spec.Proxy.Mark is not zero,
// also "meta mark" equal to it. The socket uid is set by the kernel when the
// socket is created (from the creating thread's fsuid) and cannot be changed
// by the process afterwards; a process needs CAP_SETUID to create sockets as
// another uid. The socket mark can only be set with CAP_NET_RAW (Linux 5.17
// and later) or CAP_NET_ADMIN (SO_MARK), which ordinary services do not hold. Requiring both means a
// compromised service running under another uid cannot reach an asset, and
// neither can a process that merely shares the proxy's uid but lacks the
// capability. Packets that have no full socket (TIME_WAIT acknowledgements,
// for example) carry no uid: they pass only as part of a connection that
// conntrack already saw being opened by the proxy (ct state
// established,related), so the identity check is made once per connection, on
// its first packet, and fails closed when no socket is attached.
// A flow the gate opened through the uplink (UplinkCtMark) is not one of
// them: its packets never leave toward the OT side, nor enter from it. The
// reverse holds too: every packet the gate sends toward the OT side marks
// its flow (OTCtMark), and a packet of such a flow arriving on the uplink
// (a host there claiming an asset's address, or quoting the flow in an
// ICMP error from its own) is dropped before input's established/related
// accept.
package ruleset
