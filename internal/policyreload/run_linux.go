//go:build linux

package policyreload

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/otgate/otgate/services/netconf"
	"github.com/otgate/otgate/services/overlay"
	"github.com/otgate/otgate/services/proxy/adminapi"
	"github.com/otgate/otgate/services/segment"
	"github.com/otgate/otgate/site"
)

// Run reports what the running services did with applied, the policy just
// stored (at or after since). It asks the proxy to reload, then waits up
// to wait for segment, overlay and netconf to pick up the file. The
// outcomes come in the order proxy, segment, overlay, netconf.
func Run(ctx context.Context, s Sockets, applied *site.Applied, since time.Time, wait time.Duration) []Outcome {
	var out []Outcome
	if s.Proxy != "" {
		out = append(out, reloadProxy(s.Proxy))
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	type watcher struct {
		name, socket string
		check        func(ctx context.Context) (done bool, detail string, err error)
	}
	sha := applied.SourceSHA256
	short := fmt.Sprintf("%x", sha[:6])
	ws := []watcher{
		{"segment", s.Segment, func(ctx context.Context) (bool, string, error) { return segmentApplied(s.Segment, sha, since) }},
		{"overlay", s.Overlay, func(ctx context.Context) (bool, string, error) {
			snap, err := overlay.FetchSnapshot(ctx, s.Overlay)
			if err != nil {
				return false, "", err
			}
			if snap.PolicySHA256 == sha && snap.Error == "" {
				return true, fmt.Sprintf("serves policy sha256 %s: %d overlay addresses on %s", short, len(snap.Entries), snap.Link), nil
			}
			return false, snap.Error, nil
		}},
		{"netconf", s.Netconf, func(ctx context.Context) (bool, string, error) {
			rsp, err := netconf.Query(ctx, s.Netconf, netconf.Request{Op: netconf.OpStatus})
			if err != nil {
				return false, "", err
			}
			st := rsp.Status
			if st != nil && st.PolicySHA256 == sha && st.Error == "" {
				return true, fmt.Sprintf("configured for policy sha256 %s: %d downlinks, %d assets watched", short, len(st.Links), len(st.Assets)), nil
			}
			if st == nil {
				return false, "no status in the answer", nil
			}
			return false, st.Error, nil
		}},
	}
	res := make([]Outcome, len(ws))
	var wg sync.WaitGroup
	for i, w := range ws {
		if w.socket == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = waitFor(ctx, w.name, w.socket, wait, w.check)
		}()
	}
	wg.Wait()
	for i, w := range ws {
		if w.socket != "" {
			out = append(out, res[i])
		}
	}
	return out
}

// reloadProxy asks the proxy to reload through its admin socket.
func reloadProxy(path string) Outcome {
	o := Outcome{Service: "proxy"}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		o.State, o.Detail = NotRunning, fmt.Sprintf("no admin socket at %s; it loads the new policy when it starts", path)
		return o
	}
	if uid := os.Geteuid(); uid != 0 {
		o.State, o.Detail = Failed, fmt.Sprintf("not asked to reload: its admin socket %s is root only (uid %d); run `otgate sessions reload` as root", path, uid)
		return o
	}
	rsp, err := adminapi.Call(path, adminapi.Request{Op: adminapi.OpReload, Reason: "otgate site apply"})
	var unrecorded *adminapi.UnrecordedError
	if errors.As(err, &unrecorded) {
		o.State = Reloaded
		o.Detail = fmt.Sprintf("%s; WARNING: %v", rsp.ReloadSummary(), err)
		return o
	}
	if err != nil {
		o.State, o.Detail = Failed, fmt.Sprintf("%v; the proxy keeps deciding by its previous policy: fix the site file and apply it again, or run `otgate sessions reload` once the stored policy loads", err)
		return o
	}
	o.State = Reloaded
	o.Detail = rsp.ReloadSummary()
	if rsp.Policy != "" {
		o.Detail = fmt.Sprintf("decides by %s; %s", rsp.Policy, o.Detail)
	}
	return o
}

// segmentApplied reports whether segment enforces a ruleset built from the
// policy whose site file has SHA-256 sha; while it does not, the detail is
// its latest error event at or after since.
func segmentApplied(path string, sha [32]byte, since time.Time) (bool, string, error) {
	rsp, err := segment.Query(path, segment.OpStatus)
	if err != nil {
		return false, "", err
	}
	st := rsp.Status
	if st == nil {
		return false, "no status in the answer", nil
	}
	if st.PolicySHA256 == sha {
		return true, fmt.Sprintf("enforces policy sha256 %x: %s", sha[:6], st.Ruleset), nil
	}
	last := ""
	for _, e := range st.Events {
		if e.Kind == "error" && !e.Time.Before(since) {
			last = e.Message
		}
	}
	return false, last, nil
}

// waitFor polls check until it is done or ctx ends.
func waitFor(ctx context.Context, name, socket string, wait time.Duration, check func(context.Context) (bool, string, error)) Outcome {
	o := Outcome{Service: name}
	if _, err := os.Stat(socket); errors.Is(err, os.ErrNotExist) {
		o.State, o.Detail = NotRunning, fmt.Sprintf("no socket at %s; it reads the new policy file when it starts", socket)
		return o
	}
	var lastErr error
	var lastDetail string
	for {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		done, detail, err := check(qctx)
		cancel()
		if err == nil && done {
			o.State, o.Detail = Reloaded, detail
			return o
		}
		lastErr = err
		if detail != "" {
			lastDetail = detail
		}
		select {
		case <-ctx.Done():
			o.State = Failed
			switch {
			case lastErr != nil:
				o.Detail = fmt.Sprintf("unreachable (%v) for %s; check it with `otgate status`: it reads the policy file again when it restarts", lastErr, wait)
			case lastDetail != "":
				o.Detail = fmt.Sprintf("did not take the new policy within %s: %s; it keeps its previous state and retries on every change of the file: fix the site file and apply it again", wait, lastDetail)
			default:
				o.Detail = fmt.Sprintf("did not report the new policy within %s (it polls the file); see its log lines", wait)
			}
			return o
		case <-time.After(200 * time.Millisecond):
		}
	}
}
