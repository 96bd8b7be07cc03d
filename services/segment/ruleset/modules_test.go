package ruleset_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/board"
	"github.com/otgate/otgate/services/segment/ruleset"
)

// moduleFor names the kernel module (Linux 6.1) an expression needs
// beyond nf_tables itself, which has payload, cmp, immediate, bitwise,
// byteorder, lookup, range, dynset, meta, counter and objref built in. An
// expression the table does not know fails the test: find its module
// (net/netfilter/Makefile) and add both here and to the boards.
func moduleFor(t *testing.T, where string, e expr.Any) []string {
	switch x := e.(type) {
	case *expr.Payload, *expr.Cmp, *expr.Immediate, *expr.Verdict, *expr.Bitwise, *expr.Byteorder,
		*expr.Lookup, *expr.Range, *expr.Dynset, *expr.Meta, *expr.Counter, *expr.Objref:
		return nil
	case *expr.Ct:
		return []string{"nft_ct"}
	case *expr.Limit:
		return []string{"nft_limit"}
	case *expr.Log:
		if x.Key&(1<<unix.NFTA_LOG_GROUP) != 0 {
			return []string{"nft_log", "nfnetlink_log"} // NFLOG group: the nfnetlink logger
		}
		return []string{"nft_log", "nf_log_syslog"}
	case *expr.Reject:
		return []string{"nft_reject_inet"}
	case *expr.Fib:
		return []string{"nft_fib_inet"}
	case *expr.Socket:
		return []string{"nft_socket"}
	case *expr.Quota:
		return []string{"nft_quota"}
	case *expr.Connlimit:
		return []string{"nft_connlimit"}
	case *expr.Masq:
		return []string{"nft_masq"}
	case *expr.NAT:
		return []string{"nft_nat"}
	default:
		t.Errorf("%s: expression %T: no kernel module known for it (add it to moduleFor and to the boards' module lists)", where, e)
		return nil
	}
}

// Every board loads the module of every expression the baseline and the
// segment ruleset use, and the boards' nftables modules are no more than
// that (kernel code the gate never runs is not loaded). The appliance has
// no modprobe: a missing module would make the apply fail at boot.
func TestBoardsLoadTheRulesetsModules(t *testing.T) {
	spec := validSpec() // an enforce zone, a monitor zone, an exception
	spec.DHCPClient = true
	spec.Proxy.Mark = 0x5a
	full, err := ruleset.Build(spec, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	base, err := ruleset.BuildBaseline(spec.BaselineSpec)
	if err != nil {
		t.Fatal(err)
	}
	need := map[string]string{} // module -> a rule that needs it
	var walk func(where string, es []expr.Any)
	walk = func(where string, es []expr.Any) {
		for _, e := range es {
			for _, m := range moduleFor(t, where, e) {
				need[m] = where
			}
			if d, ok := e.(*expr.Dynset); ok {
				walk(where, d.Exprs)
			}
		}
	}
	for _, d := range []*ruleset.Desired{full, base} {
		for _, c := range d.Chains {
			for _, r := range c.Rules {
				walk(c.Name+"/"+r.Name, r.Exprs)
			}
		}
	}
	if _, ok := need["nft_log"]; !ok {
		t.Fatal("no log expression found: the walk missed the monitor zone's would-block rule")
	}
	for _, name := range board.Names() {
		b, err := board.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		for m, where := range need {
			if !slices.Contains(b.Modules, m) {
				t.Errorf("board %s: rule %s needs module %s, which the board does not load", name, where, m)
			}
		}
		for _, m := range b.Modules {
			if isNftExprModule(m) {
				if _, ok := need[m]; !ok {
					t.Errorf("board %s loads %s, which no rule of the gate uses", name, m)
				}
			}
		}
	}
}

// isNftExprModule: an nftables expression or logger module (the core,
// conntrack and defrag modules are what those depend on).
func isNftExprModule(m string) bool {
	return strings.HasPrefix(m, "nft_") || m == "nf_log_syslog" || m == "nfnetlink_log"
}
