package image

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/otgate/otgate/board"
	"github.com/otgate/otgate/internal/bootcfg"
)

// identityRow is the identity service of b's boot configuration.
func identityRow(t *testing.T, b *board.Board) (bootcfg.Service, *bootcfg.Config) {
	t.Helper()
	cfg := bootConfig(b, nil, nil, ProductionServices, false, false)
	for _, s := range cfg.Services {
		if s.Name == identityService {
			return s, cfg
		}
	}
	t.Fatalf("board %s: no identity row", b.Name)
	return bootcfg.Service{}, nil
}

// noTPMBoard is a test-only board without a TPM: qemu-x86_64 with its TPM
// removed and TPM.None set.
func noTPMBoard(t *testing.T) *board.Board {
	t.Helper()
	q, err := board.Lookup("qemu-x86_64")
	if err != nil {
		t.Fatal(err)
	}
	b := *q
	b.Name = "test-no-tpm"
	b.TPM = board.TPM{None: true}
	return &b
}

// The identity row gets -dev exactly on a board that says it has no TPM
// (TPM.None), never on the defined boards (they all have a TPM), and the
// shared row is not changed.
func TestIdentityRowDevModeOnlyWithoutTPM(t *testing.T) {
	before := slices.Clone(row(t, identityService).Args)
	for _, name := range board.Names() {
		b, err := board.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		if b.TPM.None {
			t.Errorf("board %s sets TPM.None: no defined board runs in dev mode", name)
		}
		if id, _ := identityRow(t, b); slices.Contains(id.Args, "-dev") {
			t.Errorf("board %s (TPM %s): identity row has -dev: %v", name, b.TPM.Device, id.Args)
		}
	}
	b := noTPMBoard(t)
	if err := b.Validate(); err != nil {
		t.Fatalf("a board without a TPM: %v", err)
	}
	id, cfg := identityRow(t, b)
	if n := strings.Count(strings.Join(id.Args, " "), "-dev"); n != 1 || arg(id, "-pcrs") != "" {
		t.Errorf("board without a TPM: identity args %v, want -dev once and no -pcrs", id.Args)
	}
	if cfg.TPM != "" || len(cfg.TPMPCRs) != 0 {
		t.Errorf("board without a TPM: boot config TPM %q PCRs %v, want none (init measures nothing)", cfg.TPM, cfg.TPMPCRs)
	}
	if err := cfg.Validate(nil); err != nil {
		t.Errorf("boot config of a board without a TPM: %v", err)
	}
	if after := row(t, identityService).Args; !slices.Equal(before, after) {
		t.Errorf("the shared identity row changed: %v -> %v", before, after)
	}
}

// A board with a TPM cannot also say it has none: the definition is
// refused naming the board and the conflicting field.
func TestBoardWithTPMCannotSetDevMode(t *testing.T) {
	for _, c := range []struct {
		field string
		tpm   board.TPM
	}{
		{"TPM.Device", board.TPM{None: true, Device: "/dev/tpmrm0"}},
		{"TPM.QEMUDevice", board.TPM{None: true, QEMUDevice: "tpm-tis"}},
		{"TPM.PCRs", board.TPM{None: true, PCRs: []int{7}}},
	} {
		b := noTPMBoard(t)
		b.TPM = c.tpm
		err := b.Validate()
		if !errors.Is(err, board.ErrInvalid) || !strings.Contains(err.Error(), "board test-no-tpm") ||
			!strings.Contains(err.Error(), "TPM.None") || !strings.Contains(err.Error(), c.field) {
			t.Errorf("TPM %+v: %v, want an error naming board test-no-tpm, TPM.None and %s", c.tpm, err, c.field)
			continue
		}
		t.Log(err)
	}
	// Each defined board with its TPM and None set: refused.
	for _, name := range board.Names() {
		q, _ := board.Lookup(name)
		b := *q
		b.TPM.None = true
		if err := b.Validate(); !errors.Is(err, board.ErrInvalid) || !strings.Contains(err.Error(), "board "+name) {
			t.Errorf("board %s with a TPM and TPM.None: %v, want refused", name, err)
		}
	}
}

// The builder checks the board too, not only board.Lookup: a definition
// handed to it directly that has a TPM and says it has none is refused
// before anything is built.
func TestPlanRefusesAnInvalidBoard(t *testing.T) {
	c, err := newConfig([]Option{WithSourceDir(sourceRoot(t))})
	if err != nil {
		t.Fatal(err)
	}
	b := noTPMBoard(t)
	b.TPM.Device = "/dev/tpmrm0"
	if _, _, err := plan(b, c); !errors.Is(err, board.ErrInvalid) {
		t.Fatalf("plan of a board with TPM.None and TPM.Device: %v, want board.ErrInvalid", err)
	}
}
