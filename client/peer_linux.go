package client

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// peerUID returns the uid owning the other end of local, a connection
// accepted on a loopback listener: the kernel's socket table
// (/proc/net/tcp and tcp6, as identd reads it) lists the connecting
// socket with its owner. ok is false when it is not found (gone
// meanwhile); errPeerClosed is a socket its process closed already: the
// table lists such an orphan with uid 0 (or, until its FIN is acked, its
// last owner) and no inode, whoever owned it.
func peerUID(local net.Conn) (uid int, ok bool, err error) {
	la, err1 := netip.ParseAddrPort(local.LocalAddr().String())
	ra, err2 := netip.ParseAddrPort(local.RemoteAddr().String())
	if err1 != nil || err2 != nil {
		return 0, false, fmt.Errorf("peer of %s: not an IP connection", local.RemoteAddr())
	}
	// The connecting socket's row: its local address is our remote one.
	// The table is this thread's network namespace's (/proc/net would be
	// the main thread's, which a program may have moved elsewhere), held
	// for the reads.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for _, table := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
		want4 := strings.HasSuffix(table, "/tcp")
		if want4 && !(ra.Addr().Unmap().Is4() && la.Addr().Unmap().Is4()) {
			continue
		}
		uid, ok, err := findTCPOwner(table, procTCPAddr(ra, want4), procTCPAddr(la, want4))
		if err != nil || ok {
			return uid, ok, err
		}
	}
	return 0, false, nil
}

// procTCPAddr writes a as /proc/net/tcp{,6} does: the address as 32-bit
// words in host (little-endian) order, hex, then ":" and the port.
func procTCPAddr(a netip.AddrPort, v4 bool) string {
	var b []byte
	if v4 {
		x := a.Addr().Unmap().As4()
		b = x[:]
	} else {
		x := a.Addr().As16() // a v4 address as v4-mapped
		b = x[:]
	}
	out := make([]byte, len(b))
	for i := 0; i < len(b); i += 4 {
		binary.LittleEndian.PutUint32(out[i:], binary.BigEndian.Uint32(b[i:]))
	}
	return strings.ToUpper(hex.EncodeToString(out)) + fmt.Sprintf(":%04X", a.Port())
}

// findTCPOwner reads the uid of the row of table with local address
// local and remote address remote; errPeerClosed when the row has no
// inode (no process holds the socket any more).
func findTCPOwner(table, local, remote string) (int, bool, error) {
	f, err := os.Open(table)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 || fs[1] != local || fs[2] != remote {
			continue
		}
		uid, err := strconv.Atoi(fs[7])
		if err != nil {
			return 0, false, fmt.Errorf("%s: bad uid %q", table, fs[7])
		}
		if fs[9] == "0" {
			return 0, false, errPeerClosed
		}
		return uid, true, nil
	}
	return 0, false, sc.Err()
}
