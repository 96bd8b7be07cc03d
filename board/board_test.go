package board

import (
	"strings"
	"testing"
)

// Every defined board is valid and has a TPM (none runs in dev mode).
func TestDefinedBoardsValidWithTPM(t *testing.T) {
	for _, name := range Names() {
		b, err := Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		if b.TPM.None || b.TPM.Device == "" {
			t.Errorf("board %s: TPM %+v, want a TPM device and not None", name, b.TPM)
		}
	}
}

// register refuses a definition that says it has no TPM and names one.
func TestRegisterRefusesDevModeWithTPM(t *testing.T) {
	defer func() {
		r := recover()
		if s, _ := r.(string); !strings.Contains(s, "board bad-dev: TPM.None") || !strings.Contains(s, "TPM.Device") {
			t.Fatalf("register panicked with %v, want the board and the conflicting field named", r)
		}
		if _, ok := boards["bad-dev"]; ok {
			t.Fatal("invalid board registered")
		}
	}()
	register(&Board{Name: "bad-dev", TPM: TPM{None: true, Device: "/dev/tpmrm0"}})
}
