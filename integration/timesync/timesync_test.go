// Package timesync holds the QEMU integration test of the gate's time
// service: a gate whose hardware clock is years behind sets its clock
// from an NTP server on the uplink side.
package timesync

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beevik/ntp"

	"github.com/otgate/otgate/image"
	"github.com/otgate/otgate/integration/internal/gatetest"
	"github.com/otgate/otgate/qemu"
	"github.com/otgate/otgate/qemu/lab"
)

// ntpServer is chronyd on the lab's side of the uplink (lab.UplinkHostCIDR).
const ntpServer = "192.0.2.1"

// The story: a DIN-rail PC whose RTC battery died boots with its
// hardware clock at 2020-01-01 (QEMU -rtc base=...). The plant's DHCP
// server names its time server (option 42: chronyd on the uplink side,
// serving this host's time; -x: it sets no clock); the site file names
// none, so the time service takes the lease's from netconf (the site
// file's uplink.ntp, which wins over it, is tested on the host). The gate comes up
// (init: ready does not wait for the clock); the time service, with no
// clock file on /perm yet, sets the clock forward from 2020 to the build
// floor (a date the image was built after) at once; the gate gets its
// uplink by DHCP, and the time service steps the clock by what remains,
// through the segment ruleset (the gate's own output on the uplink, the
// reply as an established flow), to within a second of this host's
// clock; it logs the old and new time and the server, and writes the
// hardware clock so the next boot starts there. The next poll only slews.
//
// Then the battery is still dead: the second boot of the same gate has
// its hardware clock at 2020 again, and the time server does not answer
// (the uplink's time server is down; the lease still names it). The
// clock does not stay in 2020: the time service sets it forward to the
// floor the first boot saved on /perm (the last known-good time: at its
// sync, and at its shutdown), says so in the log and in its status row, and waits for a
// server.
func TestGateStepsAWrongClock(t *testing.T) {
	// The test services (statusdump prints init's status table) in an
	// image directory of this test's own.
	b, img := gatetest.Variant(t, "qemu-x86_64", "timesync", image.WithTestServices(true))
	for _, bin := range []string{"dnsmasq", "mkfs.ext4", "chronyd"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (make test installs it)", bin)
		}
	}
	ctx := gatetest.Context(t, 10*time.Minute)
	l, err := lab.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	gatetest.StartDHCPServer(t, l, "--dhcp-option=option:ntp-server,"+ntpServer)
	stopChronyd := startChronyd(t, ctx, l)

	state := t.TempDir()
	disk := gatetest.PermWithPolicy(t, state, filepath.Join("testdata", "site.yaml"))
	opts := []qemu.Option{
		qemu.WithLab(l),
		qemu.WithDisk(disk, 0),
		qemu.WithTPM(filepath.Join(state, "tpm")),
		qemu.WithQEMUArgs("-rtc", "base=2020-01-01T00:00:00"),
		qemu.WithTimeout(6 * time.Minute),
	}
	vm := qemu.StartT(t, b, img, opts...)
	start := gatetest.MustSee(t, vm, regexp.MustCompile(`^timesync: .*timesync: starting: clock 2020-01-01T`))
	if !strings.Contains(start, "hardware clock 2020-01-01T") {
		t.Errorf("start: %q; want the hardware clock read at 2020-01-01", start)
	}
	t.Logf("boot: %s", gatetest.MustSee(t, vm, "init: ready ("))
	gatetest.MustSee(t, vm, "init: timesync ready (")
	gatetest.MustSee(t, vm, regexp.MustCompile(`^timesync: .*timesync: servers from the DHCP lease \(option 42; the site file's uplink\.ntp names none\): `+regexp.QuoteMeta(ntpServer)+`$`))

	t.Logf("build floor: %s", gatetest.MustSee(t, vm, regexp.MustCompile(`timesync: clock behind the build floor: 2020-01-01T\S+ -> \S+: set to it`)))
	stepRE := regexp.MustCompile(`timesync: stepped the clock by \+(\d+)\.\d+s: (\S+) -> (\S+) \(first sync of this boot; servers ` +
		regexp.QuoteMeta(ntpServer) + ` \+\d+\.\d+s \(stratum 3, `)
	line := gatetest.MustSee(t, vm, stepRE)
	seen := time.Now()
	m := stepRE.FindStringSubmatch(line)
	after, err := time.Parse("2006-01-02T15:04:05.000Z", m[3])
	if err != nil {
		t.Fatalf("step line %q: %v", line, err)
	}
	// The console line follows the step at once: the gate's new time is
	// this host's, less the line's way out of the guest.
	if d := seen.Sub(after); d < -time.Second || d > time.Second {
		t.Errorf("the gate's clock after the step: %s, this host's when the line arrived: %s (%s apart); want within a second",
			after.Format(time.RFC3339Nano), seen.UTC().Format(time.RFC3339Nano), d)
	}
	t.Logf("step: %s", line)

	// The hardware clock follows, in whole seconds.
	rtcRE := regexp.MustCompile(`timesync: hardware clock /dev/rtc0 set to (\S+) UTC, reads back (\S+)$`)
	rtc := rtcRE.FindStringSubmatch(gatetest.MustSee(t, vm, rtcRE))
	back, err := time.Parse(time.RFC3339, rtc[2])
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(back); d < -2*time.Second || d > 2*time.Second {
		t.Errorf("hardware clock reads back %s, %s from this host's time", back, d)
	}
	t.Logf("hardware clock: %s", rtc[0])

	// The state is the service's note in init's status table (`otgate
	// status`), printed by statusdump 20 s after the test services start.
	row := gatetest.MustSee(t, vm, regexp.MustCompile(`^statusdump: timesync\s+ready\s.*synchronised: stepped by \+\d+\.\d+s at `+
		fmt.Sprint(time.Now().UTC().Year())+`-\S+ \(`+regexp.QuoteMeta(ntpServer)+` `))
	t.Logf("status row: %s", row)
	// The next poll (64 s on) finds the clock in step and hands the
	// small remainder to the kernel's PLL (adjtimex ADJ_OFFSET): a slew,
	// never a step again.
	slew := gatetest.MustSee(t, vm, regexp.MustCompile(`timesync: slewing the clock by [+-]0\.\d+s at \S+ \(servers `+regexp.QuoteMeta(ntpServer)+` `))
	t.Logf("second poll: %s", slew)
	for _, l := range vm.Lines() {
		if strings.HasPrefix(l, "init: ready (") || strings.HasPrefix(l, "init: timesync") || strings.HasPrefix(l, "init: netconf ready") {
			t.Logf("console: %s", l)
		}
	}
	for _, l := range vm.Lines() {
		if strings.Contains(l, "timesync: REFUSED") || strings.Contains(l, "timesync: no sync") || strings.Contains(l, "init: timesync exited") {
			t.Errorf("console: %s", l)
		}
	}
	off := time.Now()
	gatetest.PowerOff(t, vm)

	// The second boot: RTC at 2020, no time server.
	stopChronyd()
	vm = qemu.StartT(t, b, img, opts...)
	floorRE := regexp.MustCompile(`timesync: clock behind the last known time \(/perm/timesync/clock, synced from ` + regexp.QuoteMeta(ntpServer) +
		` \(saved at stop\)\): (2020-01-01T\S+) -> (\S+): set to it`)
	line = gatetest.MustSee(t, vm, floorRE)
	seen = time.Now()
	floor, err := time.Parse("2006-01-02T15:04:05.000Z", floorRE.FindStringSubmatch(line)[2])
	if err != nil {
		t.Fatalf("floor line %q: %v", line, err)
	}
	// The floor is the first boot's time at its shutdown (the service
	// saves it when it stops): not before the power-off, and a boot ago.
	if floor.Before(off.Add(-time.Second)) || seen.Sub(floor) > 2*time.Minute {
		t.Errorf("second boot: clock set to %s; the first boot was powered off at %s, this host's time is %s", floor, off.UTC(), seen.UTC())
	}
	t.Logf("second boot: %s", line)
	row = gatetest.MustSee(t, vm, regexp.MustCompile(`^statusdump: timesync\s+ready\s.*not synchronised: .*; the clock was set forward at start to the last known time \(/perm/timesync/clock, `))
	t.Logf("status row: %s", row)
	for _, l := range vm.Lines() {
		if strings.Contains(l, "timesync: stepped") || strings.Contains(l, "init: timesync exited") {
			t.Errorf("console: %s", l)
		}
	}
	gatetest.PowerOff(t, vm)
}

// startChronyd runs chronyd on the lab's uplink address with its own
// configuration: it serves this host's time at stratum 3 and never sets
// a clock (-x), no command socket (nothing of the host's /run/chrony).
// extra is appended to its configuration. stop ends it.
func startChronyd(t *testing.T, ctx context.Context, l *lab.Lab, extra ...string) (stop func()) {
	t.Helper()
	dir := t.TempDir()
	conf := strings.Join([]string{
		"pidfile " + filepath.Join(dir, "chronyd.pid"),
		"bindcmdaddress /", "cmdport 0", "port 123",
		"bindaddress " + ntpServer, "allow all", "local stratum 3",
	}, "\n") + "\n" + strings.Join(extra, "\n") + "\n"
	cf := filepath.Join(dir, "chrony.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd := l.Uplink.Command("chronyd", "-x", "-d", "-u", "root", "-f", cf)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("chronyd: %v", err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("chronyd output:\n%s", out.String())
		}
	})
	dial := func(_, raddr string) (net.Conn, error) { return l.Uplink.DialContext(ctx, "udp", raddr) }
	for i := 0; ; i++ {
		r, err := ntp.QueryWithOptions(ntpServer, ntp.QueryOptions{Timeout: 200 * time.Millisecond, Dialer: dial})
		if err == nil && r.Validate() == nil {
			return stop
		}
		if i > 50 {
			t.Fatalf("chronyd on %s: %v (%s)", ntpServer, err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
