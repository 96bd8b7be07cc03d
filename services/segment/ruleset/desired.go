package ruleset

import (
	"fmt"
	"sort"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The one table the gate owns, and the names inside it.
const (
	TableName = "otgate"

	ChainInput       = "input"
	ChainForward     = "forward"
	ChainOutput      = "output"
	ChainToOT        = "to_ot"
	ChainWouldBlock  = "would_block"
	ChainEnforceDrop = "enforce_drop"

	SetListenPorts = "listen_ports"
	SetAssetPorts  = "asset_ports"
	SetExceptions  = "exceptions"
	SetICMPErrors  = "icmp_errors"
	SetWBLast      = "would_block_last"
	SetWBFirst     = "would_block_first"
	// SetEnforceIfaces holds the interfaces that carry an enforce zone
	// (Spec.EnforceInterfaces): the forward chain drops what would leave
	// through one of them that nothing before it allowed.
	SetEnforceIfaces = "enforce_ifaces"

	// MapAssetVerdicts maps every asset's address to what its zone's mode
	// does with a packet toward it that nothing before allowed: enforce
	// "jump enforce_drop" (counted, dropped), monitor "jump would_block".
	MapAssetVerdicts = "asset_verdicts"
	// MapAssetSrcVerdicts maps a monitor-zone asset's address to "jump
	// would_block" for packets from it; an enforce-zone source has no
	// element and falls to the chain's drop.
	MapAssetSrcVerdicts = "asset_src_verdicts"

	// LogPrefix starts every would-block log line.
	LogPrefix = "otgate-would-block"

	// WouldBlockCtMark is the conntrack mark bit the would_block chain
	// sets on every flow it admits (ct mark set ct mark | bit: other bits
	// are kept). The forward chain lets the replies of a flow with this
	// bit, sent by a monitor-zone asset, through to would_block before
	// the enforce zones' verdicts see them: the reply of a flow from an
	// enforce-zone asset to a monitor-zone asset is a packet toward an
	// enforce-zone asset. The proxy's socket mark (meta mark, 0x6f74 on
	// the appliance) is another field; Validate keeps the two apart all
	// the same, so a connmark save/restore could never mix them.
	WouldBlockCtMark uint32 = 0x80000000

	// UplinkCtMark is the conntrack mark bit of the gate's uplink flows:
	// set on every packet the gate sends through the uplink (its own
	// flows, and the answers of its listeners' flows). A packet of such a
	// flow arriving on another interface (an OT device claiming an uplink
	// peer's address: a forged DNS, NTP or DHCP answer) or leaving toward the OT side (a local process that opened
	// the flow through the uplink, then sends on it to an asset) is
	// dropped before the established/related accepts see it: conntrack
	// matches a packet to a flow by its addresses and ports, not by the
	// interface, and reverse-path filtering is off while the gate routes
	// nothing.
	UplinkCtMark uint32 = 0x40000000

	// OTCtMark is the conntrack mark bit of the gate's OT-side flows: set
	// on every packet the gate sends toward the OT side (to_ot, past the
	// drops of invalid and uplink flows). A packet of such a flow arriving
	// on the uplink (a host there claiming an asset's address: a forged
	// answer to the proxy or to a gate process, an ICMP error quoting the
	// flow) is dropped before the established/related accepts see it, for
	// the reason UplinkCtMark is.
	OTCtMark uint32 = 0x20000000

	// rulePrefix starts every rule comment (userdata) the gate writes.
	rulePrefix = "otgate:"
)

// Table is the gate's table.
var Table = &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}

var flowKeyType = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)

// Desired is a pure description of the gate's table: what Apply writes and
// what the drift check compares the kernel with.
type Desired struct {
	Sets   []SetDesc
	Chains []ChainDesc
}

// SetDesc is one named set or verdict map with its elements (a verdict
// map's elements carry VerdictData).
type SetDesc struct {
	Set      nftables.Set
	Elements []nftables.SetElement
	// Dynamic sets are filled by the packet path; their elements are not
	// part of the desired state.
	Dynamic bool
}

// ChainDesc is one chain and its rules in order.
type ChainDesc struct {
	Name   string
	Base   bool // a base chain with a hook
	Hook   *nftables.ChainHook
	Policy nftables.ChainPolicy
	Rules  []RuleDesc
}

// RuleDesc is one rule. Name is unique in the table; it is stored as the
// rule's comment so drift can be reported in words.
type RuleDesc struct {
	Name  string
	Exprs []expr.Any
}

// Comment is the rule comment the kernel keeps for this rule.
func (r RuleDesc) Comment() string { return rulePrefix + r.Name }

// Build describes the table for spec at time now (exceptions expired at now
// are left out; the others carry their remaining lifetime as a kernel
// timeout, so the kernel drops them on time even if no service runs).
func Build(spec *Spec, now time.Time) (*Desired, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	d := &Desired{}
	ids := map[string]uint32{}
	addSet := func(s nftables.Set, elems []nftables.SetElement, dynamic bool) {
		s.Table = Table
		s.ID = uint32(len(d.Sets) + 1)
		ids[s.Name] = s.ID
		d.Sets = append(d.Sets, SetDesc{Set: s, Elements: elems, Dynamic: dynamic})
	}

	// Listeners. (No set of downlink names: the output chain treats every
	// interface but loopback and the uplink as the OT side.)
	var listen []nftables.SetElement
	for _, p := range sortedPorts(spec.ListenPorts) {
		listen = append(listen, nftables.SetElement{Key: portKey(p)})
	}
	addSet(nftables.Set{Name: SetListenPorts, KeyType: nftables.TypeInetService}, listen, false)

	// Assets: the proxy's allowed destinations, and per address the
	// verdict of its zone's mode (one hash lookup whatever the number of
	// assets and zones).
	var assetPorts, toAsset, fromAsset []nftables.SetElement
	for _, a := range spec.Assets {
		ip, _ := parseIPv4(a.Address) // validated
		for _, p := range sortedPorts(a.TCPPorts) {
			assetPorts = append(assetPorts, nftables.SetElement{Key: addrPortKey(ip, p)})
		}
		b := ip.As4()
		if a.Mode == ModeMonitor {
			toAsset = append(toAsset, nftables.SetElement{Key: b[:], VerdictData: jump(ChainWouldBlock)})
			fromAsset = append(fromAsset, nftables.SetElement{Key: b[:], VerdictData: jump(ChainWouldBlock)})
		} else {
			toAsset = append(toAsset, nftables.SetElement{Key: b[:], VerdictData: jump(ChainEnforceDrop)})
		}
	}
	addSet(nftables.Set{Name: SetAssetPorts, Concatenation: true,
		KeyType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)}, sortedElems(assetPorts), false)
	addSet(nftables.Set{Name: MapAssetVerdicts, KeyType: nftables.TypeIPAddr, IsMap: true, DataType: nftables.TypeVerdict},
		sortedElems(toAsset), false)
	addSet(nftables.Set{Name: MapAssetSrcVerdicts, KeyType: nftables.TypeIPAddr, IsMap: true, DataType: nftables.TypeVerdict},
		sortedElems(fromAsset), false)

	// Exceptions: one element each, with a per-element counter and the
	// remaining lifetime as its kernel timeout.
	var exc []nftables.SetElement
	for _, e := range spec.Active(now) {
		from, _ := parseIPv4(e.From)
		to, _ := parseIPv4(e.To)
		proto, _ := protoNumber(e.Protocol)
		left := e.Expires.Sub(now).Round(time.Millisecond)
		if left < time.Millisecond {
			left = time.Millisecond
		}
		exc = append(exc, nftables.SetElement{Key: flowKey(from, to, proto, e.Port), Timeout: left, Comment: e.ID})
	}
	addSet(nftables.Set{Name: SetExceptions, Concatenation: true, HasTimeout: true, Counter: true, KeyType: flowKeyType}, exc, false)

	// The ICMP error types an exception's flow gets forwarded: destination
	// unreachable (fragmentation needed among them: path MTU discovery),
	// time exceeded, parameter problem. Not a redirect or a source quench,
	// which conntrack relates to a flow as well.
	var icmpErrs []nftables.SetElement
	for _, typ := range icmpErrorTypes {
		icmpErrs = append(icmpErrs, nftables.SetElement{Key: []byte{typ}})
	}
	addSet(nftables.Set{Name: SetICMPErrors, KeyType: nftables.TypeICMPType}, icmpErrs, false)

	// The interfaces carrying an enforce zone (constant: only this batch
	// fills it).
	var enforceIfs []nftables.SetElement
	for _, n := range spec.EnforceInterfaces {
		enforceIfs = append(enforceIfs, nftables.SetElement{Key: ifname(n)})
	}
	addSet(nftables.Set{Name: SetEnforceIfaces, Constant: true, KeyType: nftables.TypeIFName}, sortedElems(enforceIfs), false)

	// Would-block report sets: "last" is refreshed on every packet
	// (update), "first" is only added (its timer starts at the first packet).
	ttl := spec.wouldBlockTTL()
	addSet(nftables.Set{Name: SetWBLast, Concatenation: true, Dynamic: true, HasTimeout: true, Timeout: ttl,
		Counter: true, Size: 65535, KeyType: flowKeyType}, nil, true)
	addSet(nftables.Set{Name: SetWBFirst, Concatenation: true, Dynamic: true, HasTimeout: true, Timeout: ttl,
		Size: 65535, KeyType: flowKeyType}, nil, true)

	est := matchCtState(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED)
	invalidState := matchCtState(expr.CtStateBitINVALID)
	accept, drop := verdict(expr.VerdictAccept), verdict(expr.VerdictDrop)

	input := ChainDesc{Name: ChainInput, Base: true, Hook: nftables.ChainHookInput, Policy: nftables.ChainPolicyDrop}
	input.Rules = append(input.Rules,
		RuleDesc{"input/loopback", cat(matchIIF("lo"), one(accept))},
		RuleDesc{"input/invalid", cat(invalidState, one(&expr.Counter{}, drop))},
		RuleDesc{"input/uplink-flow-elsewhere", cat(notIIF(spec.Uplink), matchCtMarkBit(UplinkCtMark), one(&expr.Counter{}, drop))},
		RuleDesc{"input/ot-flow-on-uplink", cat(matchIIF(spec.Uplink), matchCtMarkBit(OTCtMark), one(&expr.Counter{}, drop))},
		RuleDesc{"input/established", cat(est, one(accept))},
	)
	if spec.DHCPClient {
		input.Rules = append(input.Rules, RuleDesc{"input/dhcp-client", cat(matchIIF(spec.Uplink), matchL4(unix.IPPROTO_UDP),
			one(loadTransport(1, thSportOffset), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: portKey(67)},
				loadTransport(1, thDportOffset), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: portKey(68)}, accept))})
	}
	input.Rules = append(input.Rules,
		RuleDesc{"input/listeners", cat(matchIIF(spec.Uplink), matchL4(unix.IPPROTO_TCP),
			one(loadTransport(1, thDportOffset), &expr.Lookup{SourceRegister: 1, SetName: SetListenPorts, SetID: ids[SetListenPorts]}, accept))},
		RuleDesc{"input/drop", one(&expr.Counter{}, drop)},
	)

	wbLoad := func() []expr.Any { return cat(matchIPv4(), loadFlowKey(false)) }
	// icmpError: an IPv4 ICMP error of a type in @icmp_errors that
	// conntrack relates to a flow, travelling in direction dir, quoting an
	// IPv4 header without options (where loadQuotedFlowKey reads it).
	icmpError := func(dir []expr.Any) []expr.Any {
		return cat(matchCtState(expr.CtStateBitRELATED), dir, matchIPv4(), matchL4(unix.IPPROTO_ICMP), one(
			loadTransportN(1, 0, 1), &expr.Lookup{SourceRegister: 1, SetName: SetICMPErrors, SetID: ids[SetICMPErrors]},
			loadTransportN(1, icmpQuoted, 1), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x45}}))
	}
	forward := ChainDesc{Name: ChainForward, Base: true, Hook: nftables.ChainHookForward, Policy: nftables.ChainPolicyDrop}
	forward.Rules = append(forward.Rules,
		RuleDesc{"forward/invalid", cat(invalidState, one(&expr.Counter{}, drop))},
		// An exception's flow in the direction written (ct direction
		// original) and the replies of that flow (ct direction reply):
		// a connection the other way, from the exception's destination
		// out of its port (one would_block admitted while a zone
		// monitored), reads as the key backwards but is neither.
		RuleDesc{"forward/exceptions", cat(matchCtOriginal(), wbLoad(), one(
			&expr.Lookup{SourceRegister: 1, SetName: SetExceptions, SetID: ids[SetExceptions]}, accept))},
		RuleDesc{"forward/exception-replies", cat(est, matchCtReply(), matchIPv4(), loadFlowKey(true), one(
			&expr.Lookup{SourceRegister: 1, SetName: SetExceptions, SetID: ids[SetExceptions]}, accept))},
		// An ICMP error about a packet of an exception's flow, either way
		// (fragmentation needed, port unreachable, time exceeded ...):
		// conntrack finds the flow from the packet the error quotes and
		// gives the error that flow's entry, ct state related, ct
		// direction the way the error travels. The quoted packet is looked
		// up in the exceptions as the flow's own packets are: an error
		// toward the flow's source (ct direction reply) quotes a packet of
		// the direction written, one toward its destination (ct direction
		// original) a reply. So only a flow opened in the exception's
		// direction, only error types, only while the exception is in the
		// set; nothing else related is opened.
		RuleDesc{"forward/exception-errors-to-source", cat(icmpError(matchCtReply()), loadQuotedFlowKey(false), one(
			&expr.Lookup{SourceRegister: 1, SetName: SetExceptions, SetID: ids[SetExceptions]}, accept))},
		RuleDesc{"forward/exception-errors-to-destination", cat(icmpError(matchCtOriginal()), loadQuotedFlowKey(true), one(
			&expr.Lookup{SourceRegister: 1, SetName: SetExceptions, SetID: ids[SetExceptions]}, accept))},
		// The replies of a flow the would-block path admitted (its
		// conntrack mark), sent by an asset whose zone monitors now, go
		// to would_block (whose first rule accepts replies) before the
		// destination's verdict: the reply of a flow from an enforce-zone
		// asset to a monitor-zone asset is toward an enforce-zone asset,
		// and enforce_drop would drop it. Nothing new opens: a flow the
		// monitor-zone asset starts itself has no mark and is not a reply.
		// The source lookup ends the replies when the zone stops
		// monitoring, as for every other monitor-mode flow.
		RuleDesc{"forward/monitor-replies", cat(est, matchCtReply(), matchCtMarkBit(WouldBlockCtMark), matchIPv4(),
			addrVmap(ipv4SaddrOffset, MapAssetSrcVerdicts, ids[MapAssetSrcVerdicts]))},
		RuleDesc{"forward/to-asset", cat(matchIPv4(), addrVmap(ipv4DaddrOffset, MapAssetVerdicts, ids[MapAssetVerdicts]))},
		// An enforce zone stays enforced whatever the other zones' modes:
		// past the exceptions, the monitor-mode replies and the declared
		// assets' own verdicts, nothing leaves through an interface that
		// carries an enforce zone, so a monitor-zone asset (accepted by
		// the rule below whatever its destination) reaches no undeclared
		// host there.
		RuleDesc{"forward/to-enforce-interface", one(
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Lookup{SourceRegister: 1, SetName: SetEnforceIfaces, SetID: ids[SetEnforceIfaces]},
			&expr.Counter{}, drop)},
		RuleDesc{"forward/from-monitor-zone", cat(matchIPv4(), addrVmap(ipv4SaddrOffset, MapAssetSrcVerdicts, ids[MapAssetSrcVerdicts]))},
		RuleDesc{"forward/drop", one(&expr.Counter{}, drop)},
	)

	// Output is deny by default: the gate's own packets leave freely only
	// through loopback (which also carries everything to the gate's own
	// addresses, the overlay endpoints included) and the uplink (DHCP,
	// DNS, the peers of its listeners). Every other interface is treated
	// as the OT side: a downlink, a VLAN sub-interface netconf made before
	// segment heard of it, or anything else.
	output := ChainDesc{Name: ChainOutput, Base: true, Hook: nftables.ChainHookOutput, Policy: nftables.ChainPolicyDrop}
	output.Rules = append(output.Rules,
		RuleDesc{"output/loopback", cat(matchOIF("lo"), one(accept))},
		// No verdict here: a packet without conntrack (untracked) breaks
		// the rule at the mark, and must still find the accept below.
		RuleDesc{"output/uplink-flow", cat(matchOIF(spec.Uplink), setCtMarkBit(UplinkCtMark))},
		RuleDesc{"output/uplink", cat(matchOIF(spec.Uplink), one(accept))},
		RuleDesc{"output/to-ot", one(jump(ChainToOT))})

	proxy := cat(matchUID(spec.Proxy.UID))
	if spec.Proxy.Mark != 0 {
		proxy = cat(proxy, matchMark(spec.Proxy.Mark))
	}
	toOT := ChainDesc{Name: ChainToOT}
	toOT.Rules = append(toOT.Rules,
		RuleDesc{"to_ot/invalid", cat(invalidState, one(&expr.Counter{}, drop))},
		RuleDesc{"to_ot/uplink-flow", cat(matchCtMarkBit(UplinkCtMark), one(&expr.Counter{}, drop))},
		// No verdict (as output/uplink-flow). A packet dropped below
		// marks a flow only if conntrack already holds it: the first
		// packet of a flow that is not let out takes its entry with it.
		RuleDesc{"to_ot/ot-flow", setCtMarkBit(OTCtMark)},
		RuleDesc{"to_ot/established", cat(est, one(accept))},
		RuleDesc{"to_ot/proxy-to-asset", cat(proxy, matchIPv4(), matchL4(unix.IPPROTO_TCP), one(
			loadNet(1, ipv4DaddrOffset, 4), loadTransport(9, thDportOffset),
			&expr.Lookup{SourceRegister: 1, SetName: SetAssetPorts, SetID: ids[SetAssetPorts]}, accept))},
		RuleDesc{"to_ot/to-asset", cat(matchIPv4(), addrVmap(ipv4DaddrOffset, MapAssetVerdicts, ids[MapAssetVerdicts]))},
		RuleDesc{"to_ot/drop", one(&expr.Counter{}, drop)},
	)

	wb := ChainDesc{Name: ChainWouldBlock}
	wb.Rules = append(wb.Rules,
		RuleDesc{"would_block/replies", cat(est, matchCtReply(), one(accept))},
		RuleDesc{"would_block/record", cat(wbLoad(), one(
			&expr.Dynset{SrcRegKey: 1, SetName: SetWBLast, SetID: ids[SetWBLast], Operation: uint32(unix.NFT_DYNSET_OP_UPDATE), Exprs: []expr.Any{&expr.Counter{}}},
			&expr.Dynset{SrcRegKey: 1, SetName: SetWBFirst, SetID: ids[SetWBFirst], Operation: uint32(unix.NFT_DYNSET_OP_ADD)},
		))},
		RuleDesc{"would_block/log", one(
			&expr.Limit{Type: expr.LimitTypePkts, Rate: 10, Unit: expr.LimitTimeSecond, Burst: 20},
			&expr.Log{Key: 1<<unix.NFTA_LOG_PREFIX | 1<<unix.NFTA_LOG_GROUP, Group: spec.LogGroup, Data: []byte(LogPrefix)},
		)},
		RuleDesc{"would_block/accept", cat(one(&expr.Counter{}), setCtMarkBit(WouldBlockCtMark), one(accept))},
	)

	// The enforce verdict of the asset maps: one counter for the packets
	// toward enforce-zone assets that nothing allowed (forward and to_ot).
	enforceDrop := ChainDesc{Name: ChainEnforceDrop}
	enforceDrop.Rules = append(enforceDrop.Rules, RuleDesc{"enforce_drop/drop", one(&expr.Counter{}, drop)})

	d.Chains = []ChainDesc{input, forward, output, toOT, wb, enforceDrop}
	return d, nil
}

// BuildBaseline describes the baseline table: the deny rules without any
// asset or exception.
func BuildBaseline(b BaselineSpec) (*Desired, error) {
	return Build(&Spec{BaselineSpec: b}, time.Time{})
}

// RuleNames lists the rule names of chain in order (for drift reports).
func (d *Desired) RuleNames(chain string) []string {
	for _, c := range d.Chains {
		if c.Name == chain {
			var out []string
			for _, r := range c.Rules {
				out = append(out, r.Name)
			}
			return out
		}
	}
	return nil
}

func sortedPorts(in []uint16) []uint16 {
	out := append([]uint16(nil), in...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func sortedElems(in []nftables.SetElement) []nftables.SetElement {
	sort.Slice(in, func(i, j int) bool { return string(in[i].Key) < string(in[j].Key) })
	return in
}

// String names a desired table briefly (for logs).
func (d *Desired) String() string {
	n := 0
	for _, c := range d.Chains {
		n += len(c.Rules)
	}
	e := 0
	for _, s := range d.Sets {
		e += len(s.Elements)
	}
	return fmt.Sprintf("table inet %s: %d chains, %d rules, %d sets, %d elements", TableName, len(d.Chains), n, len(d.Sets), e)
}
