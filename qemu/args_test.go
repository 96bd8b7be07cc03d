package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/otgate/otgate/board"
)

func argsFor(t *testing.T, boardName string, opts ...Option) (string, error) {
	t.Helper()
	b := mustBoard(t, boardName)
	c := &config{}
	for _, o := range opts {
		if err := o(c); err != nil {
			return "", err
		}
	}
	p := vmPaths{kernel: "K", initramfs: "I", vars: "V", qmp: "Q"}
	if b.Boot == board.UEFIDisk {
		p.disk = "D"
	}
	if c.tpmState != "" {
		p.tpm = "T"
	}
	inv, err := buildInvocation(b, c, p, c.forwards)
	if err != nil {
		return "", err
	}
	return inv.binary + " " + strings.Join(inv.args, " "), nil
}

func TestInvocation(t *testing.T) {
	cases := []struct {
		name  string
		board string
		opts  []Option
		want  []string // substrings of the command line
		not   []string
		err   string // substring of the error, if one is expected
	}{
		{name: "x86 direct kernel", board: "qemu-x86_64",
			want: []string{"qemu-system-x86_64 ", "-accel tcg", "-cpu max", "-no-reboot", "-display none", "-serial stdio",
				"-kernel K -initrd I -append ", "console=ttyS0", "-device virtio-rng-pci", "-qmp unix:Q,server=on,wait=off",
				"-netdev hubport,id=nic0", "mac=52:54:00:0e:0a:10", "mac=52:54:00:0e:0a:11"},
			not: []string{"kvm", "pflash", "-device i6300esb", "tpm"}},
		{name: "arm64 direct kernel", board: "qemu-aarch64", opts: []Option{WithTPM("/s"), WithCmdline("a=1", "b")},
			want: []string{"qemu-system-aarch64 ", "-M virt", "-cpu cortex-a57", "console=ttyAMA0", " a=1 b",
				"-tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-tis-device,tpmdev=tpm0"},
			not: []string{"kvm"}},
		{name: "x86 TPM and watchdog", board: "qemu-x86_64", opts: []Option{WithTPM("/s"), WithWatchdog(WatchdogReset)},
			want: []string{"-device tpm-tis,tpmdev=tpm0", "-chardev socket,id=chrtpm,path=T", "-device i6300esb -action watchdog=reset"}},
		{name: "reboot allowed", board: "qemu-x86_64", opts: []Option{WithReboot()}, not: []string{"-no-reboot"}},
		{name: "user net forwards", board: "qemu-x86_64", opts: []Option{WithUserNet(HostForward{HostPort: 2222, GuestPort: 22})},
			want: []string{"-netdev user,id=nic0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22 -device virtio-net-pci,netdev=nic0",
				"-netdev hubport,id=nic1"}},
		{name: "memory and cpus", board: "qemu-x86_64", opts: []Option{WithMemory("1G"), WithSMP(3)},
			want: []string{"-m 1G -smp 3"}},
		{name: "board's cpus by default", board: "qemu-aarch64", want: []string{"-m 512M -smp 2"}},
		{name: "UEFI disk", board: "generic-x86_64",
			want: []string{"-M q35", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd",
				"if=pflash,format=raw,unit=1,file=V", "file=D,format=raw,if=none,id=boot", "bootindex=0"},
			not: []string{"-kernel", "-append"}},
		{name: "UEFI disk refuses a command line", board: "generic-x86_64", opts: []Option{WithCmdline("x")},
			err: "generic-x86_64 boots from a UEFI disk"},
		{name: "arm64 has no emulated watchdog", board: "qemu-aarch64", opts: []Option{WithWatchdog(WatchdogReset)},
			err: "qemu-aarch64 has no emulated watchdog"},
		{name: "bad watchdog action", board: "qemu-x86_64", opts: []Option{WithWatchdog("explode")},
			err: `unknown action "explode"`},
		{name: "negative disk", board: "qemu-x86_64", opts: []Option{WithDisk("/d", -1)}, err: "negative size"},
		{name: "bad forward", board: "qemu-x86_64", opts: []Option{WithUserNet(HostForward{GuestPort: 0})}, err: "bad forward"},
		{name: "nil lab", board: "qemu-x86_64", opts: []Option{WithLab(nil)}, err: "nil lab"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := argsFor(t, tc.board, tc.opts...)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q (args %s)", err, tc.err, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in\n%s", w, got)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(got, n) {
					t.Errorf("unexpected %q in\n%s", n, got)
				}
			}
		})
	}
}

func TestStartWithoutImageNamesTheFix(t *testing.T) {
	for _, name := range []string{"qemu-x86_64", "generic-x86_64"} {
		b := mustBoard(t, name)
		if _, err := os.Stat("/usr/bin/" + b.QEMU.Binary); err != nil {
			t.Skipf("no %s", b.QEMU.Binary)
		}
		before, _ := filepath.Glob(filepath.Join(os.TempDir(), "otgate-qemu-*"))
		_, err := Start(context.Background(), b, t.TempDir())
		if err == nil || !strings.Contains(err.Error(), "make image BOARD="+name) {
			t.Errorf("%s: error %v, want one naming `make image BOARD=%s`", name, err, name)
		}
		after, _ := filepath.Glob(filepath.Join(os.TempDir(), "otgate-qemu-*"))
		if len(after) > len(before) {
			t.Errorf("%s: failed Start left a temporary directory: %v -> %v", name, before, after)
		}
	}
}

func TestWaitForPatterns(t *testing.T) {
	c := newConsole()
	c.add([]byte("kernel: hello\r\n\x1b[2J\x1b[01;01H\x1b[=3hinit: ready (3 services)\r\npartial"))
	ctx := context.Background()
	if l, err := c.waitFor(ctx, "init: ready ("); err != nil || l != "init: ready (3 services)" {
		t.Errorf("prefix: %q %v", l, err)
	}
	if l, err := c.waitFor(ctx, regexp.MustCompile(`ready \((\d+) services`)); err != nil || l != "init: ready (3 services)" {
		t.Errorf("regexp: %q %v", l, err)
	}
	if _, err := c.waitFor(ctx, 42); err == nil || !strings.Contains(err.Error(), "int") {
		t.Errorf("pattern of a wrong type: %v", err)
	}
	// An incomplete line does not match until it is complete.
	got := make(chan string, 1)
	go func() {
		l, err := c.waitFor(ctx, "partial line")
		if err != nil {
			l = err.Error()
		}
		got <- l
	}()
	c.add([]byte(" line done\n"))
	if l := <-got; l != "partial line done" {
		t.Errorf("completed line: %q", l)
	}
	// After the VM is gone, a pattern that never appeared fails with ErrExited
	// ("ready" is inside a line, not its prefix).
	c.finish()
	if _, err := c.waitFor(ctx, "ready"); !errors.Is(err, ErrExited) {
		t.Errorf("after exit: %v, want ErrExited", err)
	}
}
