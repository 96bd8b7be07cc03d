package boot

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/otgate/otgate/board"
	"github.com/otgate/otgate/integration/internal/gatetest"
	"github.com/otgate/otgate/qemu"
)

// generic-x86_64: the UEFI disk image boots under OVMF to ready and finds
// its persistent partition on the boot disk; the identity's data key is
// sealed to the board's PCRs (what OVMF measured: firmware, option ROMs,
// boot loader and kernel, Secure Boot state) plus PCR 15; those PCRs are
// non-zero and the same on a second boot of the same disk and TPM state,
// which is the same device and not in quarantine.
func TestGenericUEFIBoot(t *testing.T) {
	b, img := gatetest.Image(t, "generic-x86_64")
	if len(b.TPM.PCRs) == 0 {
		t.Fatalf("board %s names no TPM PCRs; this test checks the OVMF ones", b.Name)
	}
	state := t.TempDir()
	disk := filepath.Join(state, "disk.img")
	opts := []qemu.Option{
		qemu.WithDisk(disk, 0),
		qemu.WithTPM(filepath.Join(state, "tpm")),
		qemu.WithTimeout(5 * time.Minute),
	}

	vm := qemu.StartT(t, b, img, opts...)
	gatetest.MustSee(t, vm, regexp.MustCompile(`^init: /perm mounted \(/dev/vda\d+, ext4, boot 1\)`))
	t.Logf("uefi: %s", gatetest.MustSee(t, vm, "init: ready ("))
	gatetest.MustSee(t, vm, "identity: identity: first boot: ")
	gatetest.MustSee(t, vm, "init: trust done (")
	boot1 := pcrs(t, vm)
	for _, p := range append(slices.Clone(b.TPM.PCRs), 15) {
		if v := boot1[p]; v == "" || strings.Trim(v, "0") == "" || strings.Trim(v, "f") == "" {
			t.Errorf("boot 1: PCR %d = %q; a sealed PCR must hold a measurement", p, v)
		}
	}
	gatetest.PowerOff(t, vm)

	// The seal on the disk names the board's PCRs plus 15, with the
	// values the first boot had.
	seal := readSeal(t, disk, strings.TrimPrefix(b.Perm.Device, "PARTLABEL="), state)
	want := append(uintPCRs(b), 15)
	if !slices.Equal(seal.PCRs, want) {
		t.Errorf("seal.cbor PCRs %v, want the board's %v plus 15", seal.PCRs, b.TPM.PCRs)
	}
	for i, p := range seal.PCRs {
		if i < len(seal.PCRValues) && hex.EncodeToString(seal.PCRValues[i]) != boot1[int(p)] {
			t.Errorf("seal.cbor PCR %d = %x, boot 1 read %s", p, seal.PCRValues[i], boot1[int(p)])
		}
	}

	vm = qemu.StartT(t, b, img, opts...)
	gatetest.MustSee(t, vm, regexp.MustCompile(`^init: /perm mounted \(/dev/vda\d+, ext4, boot 2\)`))
	gatetest.MustSee(t, vm, "trust: trust: ")
	gatetest.MustSee(t, vm, "init: trust done (")
	boot2 := pcrs(t, vm)
	for _, p := range want {
		if boot2[int(p)] != boot1[int(p)] {
			t.Errorf("PCR %d: boot 1 %s, boot 2 %s; the same disk and TPM state must measure the same", p, boot1[int(p)], boot2[int(p)])
		}
	}
	for _, l := range vm.Lines() {
		if strings.Contains(l, "QUARANTINE") || strings.HasPrefix(l, "identity: identity: first boot") {
			t.Errorf("boot 2: %q", l)
		}
	}
	t.Logf("boot 2 of the same disk and TPM: not in quarantine, PCRs %v stable", want)
	gatetest.PowerOff(t, vm)
}

var pcrRE = regexp.MustCompile(`^pcrdump: testsvc: pcr sha256 (\d+) ([0-9a-f]{64})$`)

// pcrs reads the pcrdump service's lines: PCR index -> hex value.
func pcrs(t *testing.T, vm *qemu.VM) map[int]string {
	t.Helper()
	gatetest.MustSee(t, vm, "pcrdump: testsvc: pcrs end")
	out := map[int]string{}
	for _, l := range vm.Lines() {
		if m := pcrRE.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			out[n] = m[2]
		}
	}
	if len(out) != 24 {
		t.Fatalf("pcrdump printed %d PCRs, want 24", len(out))
	}
	return out
}

// sealFields are the fields of the identity's seal.cbor this test reads.
type sealFields struct {
	PCRs      []uint   `cbor:"3,keyasint"`
	PCRValues [][]byte `cbor:"4,keyasint"`
}

// readSeal reads /identity/seal.cbor from the perm partition of the
// powered-off disk image (debugfs at the partition's offset).
func readSeal(t *testing.T, disk, label, dir string) sealFields {
	t.Helper()
	out, err := exec.Command("partx", "-g", "-b", "-o", "START,NAME", disk).CombinedOutput()
	if err != nil {
		t.Fatalf("partx %s: %v\n%s", disk, err, out)
	}
	start := int64(-1)
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && f[1] == label {
			start, _ = strconv.ParseInt(f[0], 10, 64)
		}
	}
	if start < 0 {
		t.Fatalf("no partition %s on %s:\n%s", label, disk, out)
	}
	dst := filepath.Join(dir, "seal.cbor")
	if out, err := exec.Command("debugfs", "-R", "dump /identity/seal.cbor "+dst,
		disk+"?offset="+strconv.FormatInt(start*512, 10)).CombinedOutput(); err != nil {
		t.Fatalf("debugfs: %v\n%s", err, out)
	}
	b, err := os.ReadFile(dst)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		t.Fatalf("seal.cbor from the perm partition: %v (%d bytes)", err, len(b))
	}
	var s sealFields
	if err := cbor.Unmarshal(b, &s); err != nil {
		t.Fatalf("seal.cbor: %v", err)
	}
	return s
}

func uintPCRs(b *board.Board) []uint {
	var out []uint
	for _, p := range b.TPM.PCRs {
		out = append(out, uint(p))
	}
	return out
}
