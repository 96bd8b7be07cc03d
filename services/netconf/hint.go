package netconf

import (
	"net/netip"
	"os"
	"path/filepath"

	"github.com/fxamacker/cbor/v2"

	"github.com/otgate/otgate/internal/atomicfile"
)

// addressHint is what the DHCP client remembers across restarts: the
// last address on which interface with which MAC. Nothing secret.
type addressHint struct {
	Link    string     `cbor:"1,keyasint"`
	MAC     string     `cbor:"2,keyasint"`
	Address netip.Addr `cbor:"3,keyasint"`
}

var encMode = func() cbor.EncMode {
	m, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	return m
}()

// loadHint returns the remembered address for this link and MAC, or the
// zero Addr. An unreadable file is ignored (it is only a hint).
func (c *DHCPClient) loadHint() netip.Addr {
	if c.HintPath == "" {
		return netip.Addr{}
	}
	b, err := os.ReadFile(c.HintPath)
	if err != nil {
		return netip.Addr{}
	}
	var h addressHint
	if err := cbor.Unmarshal(b, &h); err != nil {
		c.Logf("netconf: ignoring unreadable address hint %s: %v", c.HintPath, err)
		return netip.Addr{}
	}
	if h.Link != c.Link || h.MAC != c.hw.String() || !h.Address.Is4() {
		return netip.Addr{}
	}
	return h.Address
}

// saveHint remembers a (the zero Addr forgets).
func (c *DHCPClient) saveHint(a netip.Addr) {
	if c.HintPath == "" {
		return
	}
	if !a.IsValid() {
		if err := os.Remove(c.HintPath); err != nil && !os.IsNotExist(err) {
			c.Logf("netconf: forget address hint: %v", err)
		}
		return
	}
	b, err := encMode.Marshal(addressHint{Link: c.Link, MAC: c.hw.String(), Address: a})
	if err == nil {
		if err = os.MkdirAll(filepath.Dir(c.HintPath), 0o755); err == nil {
			err = atomicfile.Write(c.HintPath, b, 0o644)
		}
	}
	if err != nil {
		c.Logf("netconf: remember address %s: %v", a, err)
	}
}
