package alloc

import "net/netip"

// u32 and fromU32 convert IPv4 addresses to and from integers.
func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func fromU32(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// span is an inclusive integer range of addresses.
type span struct{ first, last uint32 }

func spanOf(p netip.Prefix) span {
	first := u32(p.Masked().Addr())
	return span{first, first | (uint32(1)<<(32-p.Bits()) - 1)}
}

func (s span) size() uint64 { return uint64(s.last-s.first) + 1 }

// usedSet marks addresses of the overlay prefix that are taken.
type usedSet struct {
	base uint32
	bits []uint64
}

func newUsedSet(p netip.Prefix) *usedSet {
	s := spanOf(p)
	return &usedSet{base: s.first, bits: make([]uint64, (s.size()+63)/64)}
}

func (u *usedSet) in(v uint32) bool { return v >= u.base && uint64(v-u.base) < uint64(len(u.bits))*64 }

func (u *usedSet) has(v uint32) bool {
	if !u.in(v) {
		return false
	}
	o := v - u.base
	return u.bits[o/64]&(1<<(o%64)) != 0
}

func (u *usedSet) set(v uint32) {
	if u.in(v) {
		o := v - u.base
		u.bits[o/64] |= 1 << (o % 64)
	}
}

func (u *usedSet) clear(v uint32) {
	if u.in(v) {
		o := v - u.base
		u.bits[o/64] &^= 1 << (o % 64)
	}
}

// broadcastLike reports addresses ending in .0 or .255.
func broadcastLike(v uint32) bool { return v&0xff == 0 || v&0xff == 0xff }
