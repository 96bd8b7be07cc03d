package ruleset

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Snapshot is the gate's table as read back from the kernel, reduced to what
// must not change between two applies: chains, rules (expressions with
// counter values cleared), the elements of the static sets and, for the
// verdict maps, each element's verdict.
type Snapshot struct {
	Present bool
	// Flags are the table's flags (NFTA_TABLE_FLAGS). The gate's table has
	// none; dormant (1) turns every chain of it off.
	Flags  uint32
	Chains map[string]ChainState
	Sets   map[string]SetState
}

// ChainState is one chain as the kernel has it.
type ChainState struct {
	Base   bool
	Hook   uint32
	Policy string
	Rules  []RuleState
}

// RuleState is one rule: its comment and a digest of its expressions.
type RuleState struct {
	Handle  uint64
	Comment string
	Digest  string
}

// SetState is one set: its shape and (for static sets) its element keys,
// and for a verdict map each element's verdict.
type SetState struct {
	Shape    string
	Keys     []string          // hex keys, sorted; empty for dynamic sets
	Verdicts map[string]string // verdict map only: hex key -> verdict in nft's words ("jump would_block")
}

// ReadSnapshot reads the gate's table. A missing table is a Snapshot with
// Present false, not an error.
func ReadSnapshot(conn *nftables.Conn) (*Snapshot, error) {
	snap := &Snapshot{Chains: map[string]ChainState{}, Sets: map[string]SetState{}}
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("ruleset: list tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == TableName {
			snap.Present = true
			snap.Flags = tableFlags(t.Flags)
		}
	}
	if !snap.Present {
		return snap, nil
	}
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("ruleset: list chains: %w", err)
	}
	for _, c := range chains {
		if c.Table.Name != TableName {
			continue
		}
		cs := ChainState{}
		if c.Hooknum != nil {
			cs.Base = true
			cs.Hook = uint32(*c.Hooknum)
		}
		if c.Policy != nil {
			cs.Policy = policyName(*c.Policy)
		}
		rules, err := conn.GetRules(Table, c)
		if err != nil {
			if isNotExist(err) { // removed while we read: the caller re-reads
				return nil, fmt.Errorf("ruleset: chain %s vanished while reading: %w", c.Name, err)
			}
			return nil, fmt.Errorf("ruleset: rules of chain %s: %w", c.Name, err)
		}
		for _, r := range rules {
			cs.Rules = append(cs.Rules, RuleState{Handle: r.Handle, Comment: ruleComment(r.UserData), Digest: digestExprs(r.Exprs)})
		}
		snap.Chains[c.Name] = cs
	}
	sets, err := conn.GetSets(Table)
	if err != nil {
		return nil, fmt.Errorf("ruleset: list sets: %w", err)
	}
	for _, s := range sets {
		st := SetState{Shape: setShape(s)}
		if !s.Dynamic {
			elems, err := conn.GetSetElements(s)
			if err != nil {
				return nil, fmt.Errorf("ruleset: elements of set %s: %w", s.Name, err)
			}
			for _, e := range elems {
				k := hex.EncodeToString(e.Key)
				st.Keys = append(st.Keys, k)
				if s.IsMap {
					if st.Verdicts == nil {
						st.Verdicts = map[string]string{}
					}
					st.Verdicts[k] = kernelVerdict(e.Val)
				}
			}
			sort.Strings(st.Keys)
		}
		snap.Sets[s.Name] = st
	}
	return snap, nil
}

func isNotExist(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOENT)
}

func ruleComment(ud []byte) string {
	s, _ := userdata.GetString(ud, userdata.TypeComment)
	return s
}

func policyName(p nftables.ChainPolicy) string {
	if p == nftables.ChainPolicyAccept {
		return "accept"
	}
	return "drop"
}

// kernelVerdict names the verdict of a verdict map element as read back.
// google/nftables v0.3.0 does not decode it into VerdictData: Val holds
// the attributes nested in NFTA_DATA_VERDICT (code, and chain for a jump
// or goto).
func kernelVerdict(val []byte) string {
	ad, err := netlink.NewAttributeDecoder(val)
	if err != nil {
		return fmt.Sprintf("undecodable verdict %x", val)
	}
	ad.ByteOrder = binary.BigEndian
	v := expr.Verdict{Kind: expr.VerdictKind(1 << 32)} // no code: an impossible kind
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_VERDICT_CODE:
			v.Kind = expr.VerdictKind(int32(ad.Uint32()))
		case unix.NFTA_VERDICT_CHAIN:
			v.Chain = ad.String()
		}
	}
	if err := ad.Err(); err != nil {
		return fmt.Sprintf("undecodable verdict %x", val)
	}
	return verdictText(&v)
}

// verdictText is a verdict in nft's words.
var verdictNames = map[expr.VerdictKind]string{
	expr.VerdictReturn: "return", expr.VerdictGoto: "goto", expr.VerdictJump: "jump",
	expr.VerdictBreak: "break", expr.VerdictContinue: "continue", expr.VerdictDrop: "drop",
	expr.VerdictAccept: "accept", expr.VerdictStolen: "stolen", expr.VerdictQueue: "queue",
	expr.VerdictRepeat: "repeat", expr.VerdictStop: "stop",
}

func verdictText(v *expr.Verdict) string {
	if v == nil {
		return "no verdict"
	}
	n, ok := verdictNames[v.Kind]
	if !ok {
		n = fmt.Sprintf("verdict %d", v.Kind)
	}
	if v.Chain != "" {
		n += " " + v.Chain
	}
	return n
}

// keyText is an element key in words: an IPv4 address for 4 bytes, else hex.
func keyText(hexKey string) string {
	if b, err := hex.DecodeString(hexKey); err == nil && len(b) == 4 {
		return netip.AddrFrom4([4]byte(b)).String()
	}
	return hexKey
}

// setShape describes a set's kind. (google/nftables v0.3.0 reads a verdict
// map's data type into KeyType, so a map read back says key=verdict; both
// sides of a comparison are read back, so they agree.)
func setShape(s *nftables.Set) string {
	return fmt.Sprintf("key=%s map=%v timeout=%v/%s counter=%v dynamic=%v", s.KeyType.Name, s.IsMap, s.HasTimeout, s.Timeout, s.Counter, s.Dynamic)
}

// digestExprs hashes a rule's expressions with counter values cleared (they
// move with traffic; everything else must stay as applied).
func digestExprs(exprs []expr.Any) string {
	h := sha256.New()
	for _, e := range exprs {
		b, err := expr.Marshal(byte(nftables.TableFamilyINet), normalize(e))
		if err != nil {
			fmt.Fprintf(h, "unmarshalable %T;", e)
			continue
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

func normalize(e expr.Any) expr.Any {
	switch v := e.(type) {
	case *expr.Counter:
		return &expr.Counter{}
	case *expr.Dynset:
		c := *v
		c.Exprs = nil
		for _, x := range v.Exprs {
			c.Exprs = append(c.Exprs, normalize(x))
		}
		return &c
	}
	return e
}

// Drift lists, in words, how the kernel's table differs from the desired
// description d; when applied is not nil (the snapshot read right after the
// last apply) every rule must also still have the exact expressions it had
// then. An empty list means no drift.
func Drift(d *Desired, kernel, applied *Snapshot) []string {
	if !kernel.Present {
		return []string{fmt.Sprintf("table inet %s is missing", TableName)}
	}
	var out []string
	if kernel.Flags != 0 {
		what := ""
		if kernel.Flags&unix.NFT_TABLE_F_DORMANT != 0 {
			what = " (dormant: none of its chains filters anything)"
		}
		out = append(out, fmt.Sprintf("table inet %s has flags 0x%x%s, want none", TableName, kernel.Flags, what))
	}
	want := map[string]bool{}
	for _, cd := range d.Chains {
		want[cd.Name] = true
		cs, ok := kernel.Chains[cd.Name]
		if !ok {
			out = append(out, fmt.Sprintf("chain %s is missing", cd.Name))
			continue
		}
		if cd.Base {
			if !cs.Base || cs.Hook != uint32(*cd.Hook) || cs.Policy != policyName(cd.Policy) {
				out = append(out, fmt.Sprintf("chain %s: hook %d policy %q, want hook %d policy %q", cd.Name, cs.Hook, cs.Policy, *cd.Hook, policyName(cd.Policy)))
			}
		} else if cs.Base {
			out = append(out, fmt.Sprintf("chain %s: became a base chain", cd.Name))
		}
		out = append(out, ruleDrift(cd, cs)...)
		if applied != nil {
			if prev, ok := applied.Chains[cd.Name]; ok {
				out = append(out, exprDrift(cd.Name, prev, cs)...)
			}
		}
	}
	for name := range kernel.Chains {
		if !want[name] {
			out = append(out, fmt.Sprintf("unexpected chain %s", name))
		}
	}
	wantSets := map[string]bool{}
	for _, sd := range d.Sets {
		wantSets[sd.Set.Name] = true
		ks, ok := kernel.Sets[sd.Set.Name]
		if !ok {
			out = append(out, fmt.Sprintf("set %s is missing", sd.Set.Name))
			continue
		}
		if applied != nil {
			if prev, ok := applied.Sets[sd.Set.Name]; ok && prev.Shape != ks.Shape {
				out = append(out, fmt.Sprintf("set %s: shape %s, applied %s", sd.Set.Name, ks.Shape, prev.Shape))
			}
		}
		if sd.Dynamic {
			continue
		}
		var wantKeys []string
		for _, e := range sd.Elements {
			wantKeys = append(wantKeys, hex.EncodeToString(e.Key))
		}
		sort.Strings(wantKeys)
		if missing, extra := diffKeys(wantKeys, ks.Keys); len(missing)+len(extra) > 0 {
			out = append(out, fmt.Sprintf("set %s: %d elements missing, %d unexpected", sd.Set.Name, len(missing), len(extra)))
		}
		if sd.Set.IsMap {
			out = append(out, verdictDrift(sd, ks)...)
		}
	}
	for name := range kernel.Sets {
		if !wantSets[name] {
			out = append(out, fmt.Sprintf("unexpected set %s", name))
		}
	}
	sort.Strings(out)
	return out
}

func ruleDrift(cd ChainDesc, cs ChainState) []string {
	var got []string
	for _, r := range cs.Rules {
		got = append(got, strings.TrimPrefix(r.Comment, rulePrefix))
	}
	var want []string
	for _, r := range cd.Rules {
		want = append(want, r.Name)
	}
	if strings.Join(got, "\n") == strings.Join(want, "\n") {
		return nil
	}
	var out []string
	have := map[string]bool{}
	for _, g := range got {
		have[g] = true
	}
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[w] = true
		if !have[w] {
			out = append(out, fmt.Sprintf("chain %s: rule %s is missing", cd.Name, w))
		}
	}
	for i, g := range got {
		if !wanted[g] {
			out = append(out, fmt.Sprintf("chain %s: unexpected rule (handle %d, comment %q)", cd.Name, cs.Rules[i].Handle, cs.Rules[i].Comment))
		}
	}
	if len(out) == 0 {
		out = append(out, fmt.Sprintf("chain %s: rules out of order", cd.Name))
	}
	return out
}

func exprDrift(chain string, prev, now ChainState) []string {
	if len(prev.Rules) != len(now.Rules) {
		return nil // reported by ruleDrift in words
	}
	var out []string
	for i := range now.Rules {
		if now.Rules[i].Comment == prev.Rules[i].Comment && now.Rules[i].Digest != prev.Rules[i].Digest {
			out = append(out, fmt.Sprintf("chain %s: rule %s was modified", chain, strings.TrimPrefix(now.Rules[i].Comment, rulePrefix)))
		}
	}
	return out
}

// verdictDrift names the elements of a verdict map that the kernel has
// with another verdict than desired (a few in words, then a count).
func verdictDrift(sd SetDesc, ks SetState) []string {
	const named = 5
	var out []string
	n := 0
	for _, e := range sd.Elements {
		k := hex.EncodeToString(e.Key)
		got, ok := ks.Verdicts[k]
		if !ok {
			continue // missing: counted with the keys
		}
		if want := verdictText(e.VerdictData); got != want {
			n++
			if n <= named {
				out = append(out, fmt.Sprintf("map %s: element %s maps to %s, want %s", sd.Set.Name, keyText(k), got, want))
			}
		}
	}
	if n > named {
		out = append(out, fmt.Sprintf("map %s: %d more elements with another verdict", sd.Set.Name, n-named))
	}
	return out
}

func diffKeys(want, got []string) (missing, extra []string) {
	g := map[string]bool{}
	for _, k := range got {
		g[k] = true
	}
	w := map[string]bool{}
	for _, k := range want {
		w[k] = true
		if !g[k] {
			missing = append(missing, k)
		}
	}
	for _, k := range got {
		if !w[k] {
			extra = append(extra, k)
		}
	}
	return missing, extra
}

// Equal reports whether two snapshots hold the same table.
func (s *Snapshot) Equal(o *Snapshot) bool {
	if s.Present != o.Present || len(s.Chains) != len(o.Chains) || len(s.Sets) != len(o.Sets) {
		return false
	}
	for n, c := range s.Chains {
		oc, ok := o.Chains[n]
		if !ok || c.Base != oc.Base || c.Hook != oc.Hook || c.Policy != oc.Policy || len(c.Rules) != len(oc.Rules) {
			return false
		}
		for i := range c.Rules {
			if c.Rules[i].Comment != oc.Rules[i].Comment || c.Rules[i].Digest != oc.Rules[i].Digest {
				return false
			}
		}
	}
	for n, st := range s.Sets {
		ot, ok := o.Sets[n]
		if !ok || st.Shape != ot.Shape || strings.Join(st.Keys, ",") != strings.Join(ot.Keys, ",") || len(st.Verdicts) != len(ot.Verdicts) {
			return false
		}
		for k, v := range st.Verdicts {
			if ot.Verdicts[k] != v {
				return false
			}
		}
	}
	return true
}

// tableFlags undoes google/nftables v0.3.0's reading of NFTA_TABLE_FLAGS
// in the host's byte order: the kernel sends it big-endian (dormant, 1,
// reads as 0x01000000 on x86 and arm64).
func tableFlags(raw uint32) uint32 {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], raw)
	return binary.BigEndian.Uint32(b[:])
}
