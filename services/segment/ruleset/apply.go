package ruleset

import (
	"fmt"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
)

// elementsPerMessage bounds one NEWSETELEM message; all messages still go
// into the same batch (one transaction).
const elementsPerMessage = 512

// batchSocketBuffer is the netlink socket buffer asked for, so a batch with
// thousands of elements fits in one send.
const batchSocketBuffer = 16 << 20

// NewConn opens an nftables connection; netnsFd < 0 means the current
// network namespace. The connection's socket buffers are enlarged so one
// batch can carry a large ruleset.
func NewConn(netnsFd int) (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.WithSockOptions(func(c *netlink.Conn) error {
		// Best effort: the kernel caps the size at net.core.wmem_max unless
		// the caller has CAP_NET_ADMIN (SO_SNDBUFFORCE); a smaller buffer
		// only matters for very large batches.
		_ = c.SetWriteBuffer(batchSocketBuffer)
		_ = c.SetReadBuffer(batchSocketBuffer)
		return nil
	})}
	if netnsFd >= 0 {
		opts = append(opts, nftables.WithNetNSFd(netnsFd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("ruleset: open nftables netlink: %w", err)
	}
	return c, nil
}

// Apply replaces the gate's table with the one described by spec at now, in
// one atomic batch. On error the kernel keeps the previous table unchanged.
func Apply(conn *nftables.Conn, spec *Spec, now time.Time) (*Desired, error) {
	d, err := Build(spec, now)
	if err != nil {
		return nil, err
	}
	if err := ApplyDesired(conn, d); err != nil {
		return nil, err
	}
	return d, nil
}

// ApplyDesired writes d as one batch: create the table if missing (so the
// delete cannot fail), delete it, create it again with everything inside:
// the sets, the chains, the set elements (a verdict map's elements name
// chains, which must exist first), the rules. The kernel commits all of it
// or none of it.
func ApplyDesired(conn *nftables.Conn, d *Desired) error {
	conn.AddTable(Table)
	conn.DelTable(Table)
	conn.AddTable(Table)
	sets := make([]nftables.Set, len(d.Sets))
	for i := range d.Sets {
		sets[i] = d.Sets[i].Set // copy: AddSet may fill fields
		if err := conn.AddSet(&sets[i], nil); err != nil {
			return fmt.Errorf("ruleset: set %s: %w", sets[i].Name, err)
		}
	}
	chains := map[string]*nftables.Chain{}
	for _, cd := range d.Chains {
		c := &nftables.Chain{Name: cd.Name, Table: Table}
		if cd.Base {
			pol := cd.Policy
			c.Type = nftables.ChainTypeFilter
			c.Hooknum = cd.Hook
			c.Priority = nftables.ChainPriorityFilter
			c.Policy = &pol
		}
		chains[cd.Name] = conn.AddChain(c)
	}
	for i := range d.Sets {
		elems := d.Sets[i].Elements
		for start := 0; start < len(elems); start += elementsPerMessage {
			end := min(start+elementsPerMessage, len(elems))
			if err := conn.SetAddElements(&sets[i], elems[start:end]); err != nil {
				return fmt.Errorf("ruleset: set %s elements: %w", sets[i].Name, err)
			}
		}
	}
	for _, cd := range d.Chains {
		for _, r := range cd.Rules {
			conn.AddRule(&nftables.Rule{
				Table:    Table,
				Chain:    chains[cd.Name],
				Exprs:    r.Exprs,
				UserData: userdata.AppendString(nil, userdata.TypeComment, r.Comment()),
			})
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("ruleset: apply %s: %w", d, err)
	}
	return nil
}

// InstallBaseline installs the baseline deny ruleset in the current network
// namespace in one atomic batch: input dropped except loopback,
// established/related, DHCP replies and the gate's listeners on the uplink;
// forward dropped; output only through loopback and the uplink (every
// other interface is the OT side, and no asset is declared yet, so not even
// the proxy reaches it). Init calls it before any
// interface comes up. It replaces a previous gate table and touches nothing
// else.
func InstallBaseline(b BaselineSpec) error {
	conn, err := NewConn(-1)
	if err != nil {
		return err
	}
	return ApplyBaseline(conn, b)
}

// ApplyBaseline is InstallBaseline on a given connection.
func ApplyBaseline(conn *nftables.Conn, b BaselineSpec) error {
	d, err := BuildBaseline(b)
	if err != nil {
		return err
	}
	return ApplyDesired(conn, d)
}
