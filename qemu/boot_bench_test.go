package qemu

import (
	"context"
	"testing"
	"time"
)

// BenchmarkBaselineBoot boots each board's kernel with the trivial test
// init, which prints a marker and powers off at once: the baseline the
// image's boot-to-ready time is compared against. It reports the wall time
// from starting QEMU to the marker and to QEMU's exit.
func BenchmarkBaselineBoot(b *testing.B) {
	for _, name := range []string{"qemu-x86_64", "qemu-aarch64"} {
		b.Run(name, func(b *testing.B) {
			bd := mustBoard(b, name)
			requireQEMU(b, bd)
			img := testImage(b, bd)
			var toMarker, toExit time.Duration
			for i := 0; i < b.N; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				vm, err := Start(ctx, bd, "", img)
				if err != nil {
					cancel()
					b.Fatal(err)
				}
				if _, err := vm.WaitFor(ctx, "testinit: up"); err != nil {
					vm.Close()
					cancel()
					b.Fatal(err)
				}
				toMarker += time.Since(vm.Started())
				exit, err := vm.Wait(ctx)
				toExit += time.Since(vm.Started())
				vm.Close()
				cancel()
				if err != nil || !exit.CleanPowerOff() {
					b.Fatalf("%v %s", err, exit)
				}
			}
			b.ReportMetric(float64(toMarker.Milliseconds())/float64(b.N), "ms-to-marker")
			b.ReportMetric(float64(toExit.Milliseconds())/float64(b.N), "ms-to-exit")
		})
	}
}
