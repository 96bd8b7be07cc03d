package ruleset

import (
	"net/netip"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Small builders for the expressions the ruleset uses. Every match loads
// into register 1 (and 9..11 for the parts of a concatenated key).

const ifNameSize = 16

func ifname(name string) []byte {
	b := make([]byte, ifNameSize)
	copy(b, name)
	return b
}

func matchIIF(name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(name)},
	}
}

// notIIF is "iifname != name".
func notIIF(name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(name)},
	}
}

func matchOIF(name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(name)},
	}
}

func matchCtState(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

func matchCtReply() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeyDIRECTION},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{ctDirReply}},
	}
}

func matchCtOriginal() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeyDIRECTION},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{ctDirOriginal}},
	}
}

// matchCtMarkBit is "ct mark & bit == bit".
func matchCtMarkBit(bit uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bit), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(bit)},
	}
}

// setCtMarkBit is "ct mark set ct mark | bit": the mark's other bits stay.
func setCtMarkBit(bit uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^bit), Xor: binaryutil.NativeEndian.PutUint32(bit)},
		&expr.Ct{Register: 1, Key: expr.CtKeyMARK, SourceRegister: true},
	}
}

func matchIPv4() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
	}
}

func matchL4(proto byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
	}
}

func matchUID(uid uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(uid)},
	}
}

func matchMark(mark uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(mark)},
	}
}

// Payload offsets in the IPv4 header and the transport header.
const (
	ipv4ProtoOffset = 9
	ipv4SaddrOffset = 12
	ipv4DaddrOffset = 16
	thSportOffset   = 0
	thDportOffset   = 2
	// icmpQuoted is where an ICMP error's quoted packet starts, after
	// type, code, checksum and 4 bytes of the error's own.
	icmpQuoted = 8
)

func loadNet(reg, offset, length uint32) *expr.Payload {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: length}
}

// loadTransportN loads length bytes of the transport header (the kernel
// zeroes the rest of the last 4-byte register).
func loadTransportN(reg, offset, length uint32) *expr.Payload {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: length}
}

func loadTransport(reg, offset uint32) *expr.Payload {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: 2}
}

// addrVmap is "ip saddr/daddr vmap @m": the address is looked up in the
// verdict map m and the element's verdict (drop, jump ...) is taken; no
// element, no verdict (the rule does not match).
func addrVmap(offset uint32, m string, id uint32) []expr.Any {
	return []expr.Any{
		loadNet(1, offset, 4),
		&expr.Lookup{SourceRegister: 1, DestRegister: 0, IsDestRegSet: true, SetName: m, SetID: id}, // dreg 0: the verdict register
	}
}

// loadFlowKey loads "ip saddr . ip daddr . meta l4proto . th dport" into
// registers 1, 9, 10, 11 (16 bytes from register 1). With reverse it loads
// "ip daddr . ip saddr . meta l4proto . th sport": the key of the original
// direction as seen on a reply packet.
func loadFlowKey(reverse bool) []expr.Any {
	src, dst, port := uint32(ipv4SaddrOffset), uint32(ipv4DaddrOffset), uint32(thDportOffset)
	if reverse {
		src, dst, port = ipv4DaddrOffset, ipv4SaddrOffset, thSportOffset
	}
	return []expr.Any{
		loadNet(1, src, 4),
		loadNet(9, dst, 4),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 10},
		loadTransport(11, port),
	}
}

// loadQuotedFlowKey loads the flow key of the packet an ICMP error quotes
// (an IPv4 header without options, then the transport ports) into
// registers 1, 9, 10, 11 as loadFlowKey does: "saddr . daddr . protocol .
// dport" of the quoted packet, or with reverse "daddr . saddr . protocol .
// sport" (the key of the original direction when the quoted packet is a
// reply).
func loadQuotedFlowKey(reverse bool) []expr.Any {
	src, dst, port := uint32(icmpQuoted+ipv4SaddrOffset), uint32(icmpQuoted+ipv4DaddrOffset), uint32(icmpQuoted+20+thDportOffset)
	if reverse {
		src, dst, port = icmpQuoted+ipv4DaddrOffset, icmpQuoted+ipv4SaddrOffset, icmpQuoted+20+thSportOffset
	}
	return []expr.Any{
		loadTransportN(1, src, 4),
		loadTransportN(9, dst, 4),
		loadTransportN(10, icmpQuoted+ipv4ProtoOffset, 1),
		loadTransportN(11, port, 2),
	}
}

// flowKey is the element key matching loadFlowKey: each part padded to a
// 4-byte register.
func flowKey(from, to netip.Addr, proto byte, port uint16) []byte {
	k := make([]byte, 0, 16)
	f, t := from.As4(), to.As4()
	k = append(k, f[:]...)
	k = append(k, t[:]...)
	k = append(k, proto, 0, 0, 0)
	k = append(k, byte(port>>8), byte(port), 0, 0)
	return k
}

// addrPortKey is the key of "ip daddr . tcp dport".
func addrPortKey(a netip.Addr, port uint16) []byte {
	b := a.As4()
	return []byte{b[0], b[1], b[2], b[3], byte(port >> 8), byte(port), 0, 0}
}

func portKey(p uint16) []byte { return []byte{byte(p >> 8), byte(p)} }

func verdict(k expr.VerdictKind) *expr.Verdict { return &expr.Verdict{Kind: k} }

func jump(chain string) *expr.Verdict { return &expr.Verdict{Kind: expr.VerdictJump, Chain: chain} }

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func one(e ...expr.Any) []expr.Any { return e }

// icmpErrorTypes are ICMP destination unreachable, time exceeded and
// parameter problem.
var icmpErrorTypes = []byte{3, 11, 12}

// ctDirOriginal and ctDirReply are IP_CT_DIR_ORIGINAL and IP_CT_DIR_REPLY.
const (
	ctDirOriginal = 0
	ctDirReply    = 1
)
