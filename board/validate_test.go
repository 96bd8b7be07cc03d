package board

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// copyOf returns a deep enough copy of a defined board to modify.
func copyOf(t *testing.T, name string) *Board {
	t.Helper()
	b, err := Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	c := *b
	c.Modules = slices.Clone(b.Modules)
	c.NICs = slices.Clone(b.NICs)
	c.Kernel.Archives = slices.Clone(b.Kernel.Archives)
	c.TPM.PCRs = slices.Clone(b.TPM.PCRs)
	return &c
}

// A definition with a wrong field is refused before anything is fetched
// or built, with an error naming the board, the field and the value.
func TestValidateNamesTheBadField(t *testing.T) {
	for _, tc := range []struct {
		name   string
		board  string
		change func(b *Board)
		want   string
	}{
		{"short sha256", "qemu-x86_64", func(b *Board) { b.Kernel.SHA256 = b.Kernel.SHA256[:63] }, "Kernel.SHA256"},
		{"uppercase sha256", "qemu-x86_64", func(b *Board) { b.Kernel.SHA256 = strings.ToUpper(b.Kernel.SHA256) }, "64 lowercase hex digits"},
		{"non-hex sha256", "qemu-x86_64", func(b *Board) { b.Kernel.SHA256 = strings.Repeat("zz", 32) }, "Kernel.SHA256"},
		{"duplicate module", "qemu-x86_64", func(b *Board) { b.Modules = append(b.Modules, "nf-tables") }, `"nf-tables": listed twice`},
		{"module with a path", "qemu-x86_64", func(b *Board) { b.Modules = append(b.Modules, "kernel/foo.ko") }, `"kernel/foo.ko": not a module name`},
		{"empty module", "qemu-x86_64", func(b *Board) { b.Modules = append(b.Modules, "") }, `Modules[`},
		{"unknown NIC role", "qemu-x86_64", func(b *Board) { b.NICs[1].Role = "management" }, `unknown role "management"`},
		{"duplicate NIC", "qemu-x86_64", func(b *Board) { b.NICs = append(b.NICs, NIC{Name: "eth1", Role: Downlink}) }, `"eth1": named twice`},
		{"two uplinks", "qemu-x86_64", func(b *Board) { b.NICs = append(b.NICs, NIC{Name: "eth2", Role: Uplink}) }, `2 NICs with role "uplink"`},
		{"no downlink", "qemu-x86_64", func(b *Board) { b.NICs = b.NICs[:1] }, `no NIC with role "downlink"`},
		{"watchdog module not shipped", "qemu-x86_64", func(b *Board) { b.Watchdog.Module = "softdog" }, `Watchdog.Module "softdog" is not in Modules`},
		{"unknown arch", "qemu-x86_64", func(b *Board) { b.Arch = "riscv64" }, `Arch "riscv64"`},
		{"arch level", "qemu-x86_64", func(b *Board) { b.GoArchLevel = "v5" }, `GoArchLevel "v5"`},
		{"no arch level", "qemu-aarch64", func(b *Board) { b.GoArchLevel = "" }, `GoArchLevel ""`},
		{"package for another arch", "qemu-aarch64", func(b *Board) { b.Kernel.DebArch = "amd64" }, `Kernel.DebArch "amd64": the board is arm64`},
		{"pool leaves the archive", "qemu-x86_64", func(b *Board) { b.Kernel.Pool = "../x.deb" }, `Kernel.Pool "../x.deb"`},
		{"no archive", "qemu-x86_64", func(b *Board) { b.Kernel.Archives = nil }, "Kernel.Archives: none"},
		{"archive not http", "qemu-x86_64", func(b *Board) { b.Kernel.Archives = []string{"file:///srv/debian"} }, `Kernel.Archives[0] "file:///srv/debian"`},
		{"no release", "qemu-x86_64", func(b *Board) { b.Kernel.Release = "" }, `Kernel.Release ""`},
		{"kernel image outside", "qemu-x86_64", func(b *Board) { b.Kernel.Image = "/boot/vmlinuz" }, `Kernel.Image "/boot/vmlinuz"`},
		{"name with a slash", "qemu-x86_64", func(b *Board) { b.Name = "../x" }, `Name "../x"`},
		{"compression", "qemu-x86_64", func(b *Board) { b.InitramfsCompression = "lz4" }, `InitramfsCompression "lz4"`},
		{"boot kind", "qemu-x86_64", func(b *Board) { b.Boot = "pxe" }, `Boot "pxe"`},
		{"no console", "qemu-x86_64", func(b *Board) { b.Console = "" }, `Console ""`},
		{"console options", "generic-x86_64", func(b *Board) { b.ConsoleOptions = "fast" }, `ConsoleOptions "fast"`},
		{"console options with a space", "generic-x86_64", func(b *Board) { b.ConsoleOptions = "115200n8 init=/bin/sh" }, `ConsoleOptions "115200n8 init=/bin/sh"`},
		{"no TPM and not None", "qemu-x86_64", func(b *Board) { b.TPM = TPM{} }, "no TPM.Device"},
		{"PCR out of range", "generic-x86_64", func(b *Board) { b.TPM.PCRs = append(b.TPM.PCRs, 24) }, "TPM.PCRs"},
		{"PCR twice", "generic-x86_64", func(b *Board) { b.TPM.PCRs = append(b.TPM.PCRs, 7) }, "TPM.PCRs"},
		{"no perm", "qemu-x86_64", func(b *Board) { b.Perm = Perm{} }, "Perm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := copyOf(t, tc.board)
			tc.change(b)
			err := b.Validate()
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "board "+b.Name+": ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want ErrInvalid naming board %s and %q", err, b.Name, tc.want)
			}
			t.Log(err)
		})
	}
}

// Every problem of a definition is named at once, not one per attempt.
func TestValidateNamesEveryProblem(t *testing.T) {
	b := copyOf(t, "qemu-x86_64")
	b.Kernel.SHA256 = "abc"
	b.NICs[0].Role = "wan"
	b.Modules = append(b.Modules, "8021q")
	err := b.Validate()
	for _, want := range []string{"Kernel.SHA256", `unknown role "wan"`, `"8021q": listed twice`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want it to name %s", err, want)
		}
	}
}

// Adding a board is adding one definition: register makes it known to
// Lookup and Names; a second definition of the name, or an invalid one,
// is refused.
func TestRegisterOneDefinition(t *testing.T) {
	b := copyOf(t, "qemu-x86_64")
	b.Name = "test-added"
	register(b)
	defer delete(boards, b.Name)
	if got, err := Lookup("test-added"); err != nil || got != b {
		t.Fatalf("Lookup(test-added) = %v, %v", got, err)
	}
	if !slices.Contains(Names(), "test-added") {
		t.Errorf("Names() = %v, lacks test-added", Names())
	}
	for _, tc := range []struct {
		b    *Board
		want string
	}{
		{b, "duplicate definition test-added"},
		{&Board{Name: "test-empty"}, "board test-empty: Arch"},
	} {
		func() {
			defer func() {
				if s, _ := recover().(string); !strings.Contains(s, tc.want) {
					t.Errorf("register(%s) panicked with %q, want %q", tc.b.Name, s, tc.want)
				}
			}()
			register(tc.b)
		}()
	}
	if _, err := Lookup("test-empty"); !errors.Is(err, ErrUnknown) {
		t.Errorf("an invalid definition was registered: %v", err)
	}
}
