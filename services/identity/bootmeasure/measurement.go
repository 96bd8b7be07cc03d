package bootmeasure

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/otgate/otgate/internal/bootcfg"
)

// Paths of the measured configuration on the appliance.
const (
	// InitBinary is PID 1's binary in the image (init measures
	// /proc/self/exe, the same file).
	InitBinary = "/init"
	// AppliedPolicy is the compiled site policy the services enforce.
	AppliedPolicy = "/perm/policy/applied.cbor"
	// DefaultPolicy is the image's compiled default site policy: the
	// "policy" service row stores it as AppliedPolicy on a first boot.
	DefaultPolicy = "/etc/otgate/site.cbor"
	// HookMeasureExtra is the kernel command-line test hook (honoured only
	// when the boot config has TestHooks) whose value is mixed into the
	// measurement, so a test can boot "another image" with the same
	// binaries.
	HookMeasureExtra = "otgate.test.measure_extra"
)

// Inputs are what a boot measures. Init fills them for the running boot;
// `otgate site apply` fills them with the policy it is about to apply to
// predict the next boot's measurement. Both go through Compute, so the two
// cannot drift apart.
type Inputs struct {
	// Init is the init binary (/proc/self/exe in PID 1, InitBinary
	// elsewhere).
	Init string
	// Config is the decoded boot config; its service binaries are measured
	// in service table order, each distinct binary once.
	Config *bootcfg.Config
	// ConfigPath is the boot config file (bootcfg.Path).
	ConfigPath string
	// Policy is the policy file measured (see PolicyFile); a missing file
	// is measured as absent.
	Policy string
	// PolicyDoc, when non-nil, is measured instead of the Policy file: the
	// compiled policy an authorized apply is about to store.
	PolicyDoc []byte
	// Extra is the HookMeasureExtra string ("" in production).
	Extra string
	// Prehashed, when set, holds digests Prehash computed ahead of time
	// (init hashes the binaries while the kernel loads modules). A file
	// that changed since (size or modification time) is hashed again.
	Prehashed *Prehashed
}

// Prehashed is the result of Prehash.
type Prehashed struct {
	done  chan struct{}
	files []fileDigest
}

// Prehash starts hashing files in the background, for Compute to use.
// A file it cannot read is left to Compute, which reports it.
// Each distinct file (links to one file count once) is hashed in its own
// goroutine, so that the two files of the appliance (init, the
// multi-call binary) are hashed on two CPUs once the module loads leave
// them free.
func Prehash(paths ...string) *Prehashed {
	p := &Prehashed{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		var distinct []string
		var seen []os.FileInfo
		for _, path := range paths {
			fi, err := os.Stat(path)
			if err != nil || slices.ContainsFunc(seen, func(s os.FileInfo) bool { return os.SameFile(s, fi) }) {
				continue // unreadable (Compute reads it again and says what is wrong), or hashed already
			}
			seen = append(seen, fi)
			distinct = append(distinct, path)
		}
		out := make([]fileDigest, len(distinct))
		var wg sync.WaitGroup
		for i, path := range distinct {
			wg.Go(func() { out[i], _ = (&measurement{}).digest(path) })
		}
		wg.Wait()
		for _, d := range out {
			if d.sum != nil {
				p.files = append(p.files, d)
			}
		}
	}()
	return p
}

// Measurement is a computed boot measurement.
type Measurement struct {
	// Digest is what init extends into PCR.
	Digest [32]byte
	// Parts names the measured inputs in order (for logs and tests).
	Parts []string
}

// PolicyFile is the policy a boot measures: the applied policy under root,
// or, when none is applied yet, the image's default policy that the
// "policy" row is about to store (the same bytes), so a first boot and the
// boots after it measure the same.
func PolicyFile(root string) string {
	p := filepath.Join(root, AppliedPolicy)
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return filepath.Join(root, DefaultPolicy)
	}
	return p
}

// ExtraFromCmdline returns the HookMeasureExtra value of a kernel command
// line when the boot config enables test hooks, else "".
func ExtraFromCmdline(cfg *bootcfg.Config, cmdline string) string {
	if cfg == nil || !cfg.TestHooks {
		return ""
	}
	for _, f := range strings.Fields(cmdline) {
		if k, v, _ := strings.Cut(f, "="); k == HookMeasureExtra {
			return v
		}
	}
	return ""
}

// Compute is the boot measurement. Each part is framed (a label, its
// length and its sha256) so no two different inputs give the same stream:
//
//	init      the init binary
//	service   each distinct service binary, in service table order
//	bootcfg   the boot config (board, modules, service table; its ImageID
//	          covers every file of the initramfs)
//	policy    the applied (or default) policy, or PolicyDoc
//	extra     the test hook's string (test images only)
func Compute(in Inputs) (*Measurement, error) {
	if in.Config == nil {
		return nil, errors.New("measure: no boot config")
	}
	m := &measurement{h: sha256.New()}
	if in.Prehashed != nil {
		<-in.Prehashed.done
		m.files = append(m.files, in.Prehashed.files...)
	}
	if err := m.addFile("init", in.Init); err != nil {
		return nil, fmt.Errorf("measure init binary: %w", err)
	}
	seen := map[string]bool{}
	for _, s := range in.Config.Services {
		if seen[s.Binary] {
			continue
		}
		seen[s.Binary] = true
		if err := m.addFile("service", s.Binary); err != nil {
			return nil, fmt.Errorf("measure service %s: %w", s.Name, err)
		}
	}
	if err := m.addFile("bootcfg", in.ConfigPath); err != nil {
		return nil, fmt.Errorf("measure boot config: %w", err)
	}
	if in.PolicyDoc != nil {
		m.add("policy", in.PolicyDoc)
	} else if err := m.addFile("policy", in.Policy); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("measure policy: %w", err)
	}
	if in.Extra != "" {
		m.add("extra", []byte(in.Extra))
	}
	out := &Measurement{Parts: m.parts}
	copy(out.Digest[:], m.h.Sum(nil))
	return out, nil
}

// PCRAfterBoot is the value PCR holds after a boot that extended it once
// with digest: it starts at zero on every TPM reset and init extends it
// exactly once, so it is SHA-256(32 zero bytes || digest).
func PCRAfterBoot(digest [32]byte) [32]byte {
	var zero [32]byte
	return sha256.Sum256(append(zero[:], digest[:]...))
}

type measurement struct {
	h     hash.Hash
	parts []string
	// files caches each file's length and digest (os.SameFile): the
	// appliance's services are links to one multi-call binary, read and
	// hashed once (the stream still names it once per link).
	files []fileDigest
}

type fileDigest struct {
	fi  os.FileInfo
	n   int64
	sum []byte
}

func (m *measurement) add(label string, data []byte) {
	sum := sha256.Sum256(data)
	fmt.Fprintf(m.h, "%s %d %x\n", label, len(data), sum)
	m.parts = append(m.parts, label)
}

func (m *measurement) addFile(label, path string) error {
	d, err := m.digest(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(m.h, "%s %d %x\n", label, d.n, d.sum)
	m.parts = append(m.parts, label+" "+path)
	return nil
}

// digest is path's length and sha256, from the cache when the same file
// (unchanged) was hashed before.
func (m *measurement) digest(path string) (fileDigest, error) {
	f, err := os.Open(path)
	if err != nil {
		return fileDigest{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fileDigest{}, err
	}
	if d, ok := m.cached(fi); ok {
		return d, nil
	}
	fh := sha256.New()
	n, err := io.Copy(fh, f)
	if err != nil {
		return fileDigest{}, fmt.Errorf("read %s: %w", path, err)
	}
	d := fileDigest{fi, n, fh.Sum(nil)}
	m.files = append(m.files, d)
	return d, nil
}

func (m *measurement) cached(fi os.FileInfo) (fileDigest, bool) {
	for _, d := range m.files {
		if os.SameFile(d.fi, fi) && d.fi.ModTime().Equal(fi.ModTime()) && d.fi.Size() == fi.Size() {
			return d, true
		}
	}
	return fileDigest{}, false
}
