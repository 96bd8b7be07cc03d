package qemu

import (
	"context"
	"regexp"
	"testing"
	"time"
)

func TestBootPowerOff(t *testing.T) {
	for _, name := range []string{"qemu-x86_64", "qemu-aarch64"} {
		t.Run(name, func(t *testing.T) {
			b := mustBoard(t, name)
			requireQEMU(t, b)
			img := testImage(t, b)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			vm := StartT(t, b, "", img)
			line, err := vm.WaitFor(ctx, regexp.MustCompile(`^testinit: up \(uptime [0-9.]+s\)`))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %q after %s wall", name, line, time.Since(vm.Started()).Round(time.Millisecond))
			exit, err := vm.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: exit %s after %s wall", name, exit, time.Since(vm.Started()).Round(time.Millisecond))
			if !exit.CleanPowerOff() {
				t.Fatalf("want a clean guest power-off (exit 0, SHUTDOWN guest-shutdown), got %s", exit)
			}
			if _, err := vm.WaitFor(ctx, "testinit: powering off"); err != nil {
				t.Fatal(err)
			}
		})
	}
}
