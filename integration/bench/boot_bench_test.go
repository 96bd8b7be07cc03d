// Package bench prints the appliance image's figures (issue 2): boot to
// ready against a baseline measured in the same run, artifact sizes, and
// PID 1's resident memory at steady state. Run it with `make bench` (or
// go test -run '^$' -bench . -benchtime 1x ./integration/bench/); it
// prints figures and asserts nothing about them.
package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otgate/otgate/board"
	"github.com/otgate/otgate/image"
	"github.com/otgate/otgate/integration/internal/gatetest"
	"github.com/otgate/otgate/qemu"
	"github.com/u-root/u-root/pkg/cpio"
)

const boots = 5

// BenchmarkBootToReady boots the production image of each direct-boot
// board five times (after one warm-up boot that formats /perm) and, in
// between, the same VM (same kernel, machine, disk and TPM) with a trivial
// init that powers off at once, and reports the medians and their
// difference: what the image's own boot costs. Both are timed from QEMU's
// start to a console line. Target: ready within 1.5 s of baseline.
func BenchmarkBootToReady(b *testing.B) {
	for _, name := range []string{"qemu-x86_64", "qemu-aarch64"} {
		b.Run(name, func(b *testing.B) {
			bd, err := board.Lookup(name)
			if err != nil {
				b.Fatal(err)
			}
			gatetest.Require(b, bd)
			img := productionImage(b, bd)
			state := b.TempDir()
			opts := []qemu.Option{
				qemu.WithDisk(filepath.Join(state, "perm.raw"), 256<<20),
				qemu.WithTPM(filepath.Join(state, "tpm")),
			}
			bootOnce(b, bd, img, "init: ready (", opts...) // warm-up: formats /perm, creates the identity
			var ready, base []time.Duration
			st := stages{}
			kernel := filepath.Join(img, "kernel")
			initrd := baselineInitramfs(b, bd)
			for i := 0; i < boots; i++ {
				d, lines := bootLines(b, bd, img, "init: ready (", opts...)
				ready = append(ready, d)
				st.add(lines)
				base = append(base, bootOnce(b, bd, "", "baseline: up", qemu.WithKernel(kernel, initrd),
					qemu.WithDisk(filepath.Join(state, "baseline.raw"), 256<<20), qemu.WithTPM(filepath.Join(state, "baseline-tpm"))))
			}
			r, bl := median(ready), median(base)
			b.ReportMetric(ms(r), "ms-ready-p50")
			b.ReportMetric(ms(bl), "ms-baseline-p50")
			b.ReportMetric(ms(r-bl), "ms-over-baseline")
			b.Logf("%s: ready %v (runs %v), baseline %v (runs %v), over baseline %v (target <= 1.5s)",
				name, r, ready, bl, base, r-bl)
			b.Logf("%s: %s", name, st)
		})
	}
}

// BenchmarkImageSize reports the artifact sizes of each board's production
// image. Target (qemu-x86_64): kernel + initramfs <= 32 MiB.
func BenchmarkImageSize(b *testing.B) {
	for _, name := range []string{"qemu-x86_64", "qemu-aarch64", "generic-x86_64"} {
		b.Run(name, func(b *testing.B) {
			bd, err := board.Lookup(name)
			if err != nil {
				b.Fatal(err)
			}
			img := productionImage(b, bd)
			var total int64
			for _, f := range []string{"kernel", "initramfs"} {
				st, err := os.Stat(filepath.Join(img, f))
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(st.Size())/(1<<20), f+"-MiB")
				total += st.Size()
			}
			b.ReportMetric(float64(total)/(1<<20), "kernel+initramfs-MiB")
			b.Logf("%s: kernel + initramfs = %.1f MiB (target for qemu-x86_64 <= 32 MiB)", name, float64(total)/(1<<20))
		})
	}
}

var rssRE = regexp.MustCompile(`^statusdump: init\s+rss ([0-9.]+) MiB`)

// BenchmarkInitRSS boots the qemu-x86_64 test image (the production
// services plus test services) and reads PID 1's resident memory from the
// status table printed 20 s after boot. Target: <= 8 MiB.
func BenchmarkInitRSS(b *testing.B) {
	bd, img := gatetest.Image(b, "qemu-x86_64")
	state := b.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	vm, err := qemu.Start(ctx, bd, img,
		qemu.WithDisk(filepath.Join(state, "perm.raw"), 256<<20),
		qemu.WithTPM(filepath.Join(state, "tpm")))
	if err != nil {
		b.Fatal(err)
	}
	defer vm.Close()
	line, err := vm.WaitFor(ctx, rssRE)
	if err != nil {
		b.Fatalf("%v\n%s", err, vm.Tail(40))
	}
	mib, _ := strconv.ParseFloat(rssRE.FindStringSubmatch(line)[1], 64)
	b.ReportMetric(mib, "init-rss-MiB")
	b.Logf("PID 1 resident memory at steady state: %.1f MiB (target <= 8 MiB)", mib)
}

// stages collects, over the ready boots, the times init prints on the
// console (each in seconds of the guest's clocks): where a boot's time
// goes, printed beside the figure.
type stages map[string][]time.Duration

var (
	initStartRE = regexp.MustCompile(`^init: otgate init: .*\(started ([0-9.]+)s after boot\)`)
	modulesRE   = regexp.MustCompile(`^init: loaded \d+ of \d+ modules \(([0-9.]+)s`)
	measureRE   = regexp.MustCompile(`^init: measured boot into PCR \d+ \(\w+, ([0-9.]+)s\)`)
	serviceRE   = regexp.MustCompile(`^init: (\S+) ready \(([0-9.]+)s, cpu`)
	initReadyRE = regexp.MustCompile(`^init: ready \(\d+ services, ([0-9.]+)s after boot`)
)

// stageOrder is the order of the printed stages; services follow, by name.
var stageOrder = []string{"kernel to init", "modules", "wait for the measurement's hashes", "init to ready"}

// secs is a regexp match's seconds ("0.69") as a duration.
func secs(m []string, i int) time.Duration {
	v, _ := strconv.ParseFloat(m[i], 64)
	return time.Duration(v * float64(time.Second))
}

func (s stages) add(lines []string) {
	var start, ready time.Duration
	for _, l := range lines {
		if m := initStartRE.FindStringSubmatch(l); m != nil {
			start = secs(m, 1)
			s["kernel to init"] = append(s["kernel to init"], start)
		} else if m := modulesRE.FindStringSubmatch(l); m != nil {
			s["modules"] = append(s["modules"], secs(m, 1))
		} else if m := measureRE.FindStringSubmatch(l); m != nil {
			s["wait for the measurement's hashes"] = append(s["wait for the measurement's hashes"], secs(m, 1))
		} else if m := serviceRE.FindStringSubmatch(l); m != nil {
			s["service "+m[1]] = append(s["service "+m[1]], secs(m, 2))
		} else if m := initReadyRE.FindStringSubmatch(l); m != nil {
			ready = secs(m, 1)
		}
	}
	if start > 0 && ready > 0 {
		s["init to ready"] = append(s["init to ready"], ready-start)
	}
}

// String prints each stage's median over the boots that printed it.
func (s stages) String() string {
	names := append([]string(nil), stageOrder...)
	var svcs []string
	for k := range s {
		if strings.HasPrefix(k, "service ") {
			svcs = append(svcs, k)
		}
	}
	sort.Strings(svcs)
	names = append(names, svcs...)
	var parts []string
	for _, k := range names {
		if len(s[k]) == 0 {
			parts = append(parts, k+" not printed")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.2fs", k, median(s[k]).Seconds()))
	}
	return "stages (medians, guest clock; services from start to ready, started as their dependencies allow): " + strings.Join(parts, ", ")
}

func bootOnce(b *testing.B, bd *board.Board, img, marker string, opts ...qemu.Option) time.Duration {
	b.Helper()
	d, _ := bootLines(b, bd, img, marker, opts...)
	return d
}

// bootLines boots, waits for marker, powers the VM down and returns the
// time from QEMU's start to the marker and the console up to then.
func bootLines(b *testing.B, bd *board.Board, img, marker string, opts ...qemu.Option) (time.Duration, []string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	vm, err := qemu.Start(ctx, bd, img, opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer vm.Close()
	if _, err := vm.WaitFor(ctx, marker); err != nil {
		b.Fatalf("waiting for %q: %v\n%s", marker, err, vm.Tail(40))
	}
	d := time.Since(vm.Started())
	lines := vm.Lines()
	if marker == "init: ready (" {
		// A clean power-down keeps /perm consistent for the next boot.
		// qemu-aarch64's kernel has no power-button driver: when init
		// does not say it saw the button within 5 s, the deferred Close
		// kills the VM (ext4's journal covers that).
		pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
		defer pcancel()
		if err := vm.Powerdown(pctx); err == nil {
			seen, cancel := context.WithTimeout(pctx, 5*time.Second)
			_, err := vm.WaitFor(seen, "init: power button pressed")
			cancel()
			if err == nil {
				_, _ = vm.Wait(pctx)
			}
		}
	} else {
		_, _ = vm.Wait(ctx)
	}
	return d, lines
}

var built = map[string]string{}

// productionImage builds the board's production image (no test services)
// into out/bench/<board> once per run.
func productionImage(b *testing.B, bd *board.Board) string {
	b.Helper()
	if dir, ok := built[bd.Name]; ok {
		return dir
	}
	root := gatetest.RepoRoot(b)
	out := filepath.Join(root, "out", "bench")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := image.Build(ctx, bd, image.WithSourceDir(root), image.WithOutDir(out)); err != nil {
		b.Fatal(err)
	}
	built[bd.Name] = filepath.Join(out, bd.Name)
	return built[bd.Name]
}

// baselineInit is a trivial PID 1: print a marker, power off.
const baselineInit = `package main

import (
	"os"
	"syscall"
)

func main() {
	os.Stdout.WriteString("baseline: up\n")
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}
`

// baselineInitramfs builds the trivial init for the board's architecture
// and packs it with u-root's cpio writer.
func baselineInitramfs(b *testing.B, bd *board.Board) string {
	b.Helper()
	dir := b.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte(baselineInit), 0o644); err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(dir, "init")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+bd.Arch, "GO111MODULE=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build baseline init: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	w := cpio.Newc.Writer(&buf)
	recs := []cpio.Record{
		cpio.Directory(".", 0o755),
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.StaticFile("init", string(data), 0o755),
	}
	if err := cpio.WriteRecordsAndDirs(w, recs); err != nil {
		b.Fatal(err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(dir, "initramfs")
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	return out
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
