// Command testinit is a tiny PID 1 the qemu package's own tests boot to
// check the harness without the real image: it mounts the kernel file
// systems, loads the modules listed in /modules/order, reports what the
// guest sees (NICs, TPM devices) on the console, and then does what the
// kernel command line asks (testinit.* parameters):
//
//	testinit.addr=eth1=10.77.0.1/24,eth0=192.0.2.10/24  configure NICs (netlink)
//	testinit.dhcp=eth0         get an address by DHCP and configure it
//	testinit.listen=7777       TCP listener answering "hello from testinit\n"
//	testinit.dial=10.77.0.20:9000  connect out and send "guest says hi\n"
//	testinit.tpmek=1           print a digest of the TPM's ECC endorsement key (same TPM state, same key)
//	testinit.watchdog=2        arm /dev/watchdog with a 2 s timeout, pet it once, then stop
//	testinit.then=poweroff|wait|powerbutton   how to end (default poweroff)
//
// Every console line starts with "testinit: ".
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unsafe"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func say(format string, args ...any) {
	fmt.Printf("testinit: "+format+"\n", args...)
}

func main() {
	for _, m := range []struct{ src, dst, fs string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
	} {
		_ = os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fs, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			say("mount %s: %v", m.dst, err)
		}
	}
	loadModules()
	params := cmdline()
	say("up (%s)", uptime())
	say("net %s", strings.Join(listDir("/sys/class/net"), " "))
	tpms, _ := filepath.Glob("/dev/tpm*")
	say("tpm %s", strings.Join(tpms, " "))
	say("block %s", strings.Join(listDir("/sys/block"), " "))
	if params["testinit.tpmek"] != "" {
		printEK()
	}

	if a := params["testinit.addr"]; a != "" {
		for _, spec := range strings.Split(a, ",") {
			name, cidr, _ := strings.Cut(spec, "=")
			if err := configure(name, cidr); err != nil {
				say("addr %s %s failed: %v", name, cidr, err)
			} else {
				say("addr %s %s", name, cidr)
			}
		}
	}
	if ifname := params["testinit.dhcp"]; ifname != "" {
		dhcp(ifname)
	}
	if p := params["testinit.listen"]; p != "" {
		l, err := net.Listen("tcp", ":"+p)
		if err != nil {
			say("listen %s failed: %v", p, err)
		} else {
			go serve(l)
			say("listening %s", p)
		}
	}
	if d := params["testinit.dial"]; d != "" {
		dial(d)
	}
	if w := params["testinit.watchdog"]; w != "" {
		armWatchdog(w)
	}
	switch params["testinit.then"] {
	case "wait":
		say("waiting")
		forever()
	case "powerbutton":
		waitPowerButton()
	}
	say("powering off")
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		say("power off: %v", err)
	}
	forever()
}

func cmdline() map[string]string {
	b, _ := os.ReadFile("/proc/cmdline")
	m := map[string]string{}
	for _, f := range strings.Fields(string(b)) {
		k, v, _ := strings.Cut(f, "=")
		m[k] = v
	}
	return m
}

func uptime() string {
	b, _ := os.ReadFile("/proc/uptime")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "uptime ?"
	}
	return "uptime " + f[0] + "s"
}

func listDir(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var n []string
	for _, e := range ents {
		n = append(n, e.Name())
	}
	sort.Strings(n)
	return n
}

func loadModules() {
	f, err := os.Open("/modules/order")
	if err != nil {
		return
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		name := strings.TrimSpace(s.Text())
		if name == "" {
			continue
		}
		m, err := os.Open("/modules/" + name)
		if err != nil {
			say("module %s: %v", name, err)
			continue
		}
		err = unix.FinitModule(int(m.Fd()), "", 0)
		m.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			say("module %s: %v", name, err)
		}
	}
}

func configure(name, cidr string) error {
	link, err := waitLink(name)
	if err != nil {
		return err
	}
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(link, addr); err != nil {
		return err
	}
	return netlink.LinkSetUp(link)
}

func waitLink(name string) (netlink.Link, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		link, err := netlink.LinkByName(name)
		if err == nil || time.Now().After(deadline) {
			return link, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		say("accepted %s", c.RemoteAddr())
		fmt.Fprintf(c, "hello from testinit\n")
		c.Close()
	}
}

func dial(addr string) {
	var lastErr error
	for i := 0; i < 100; i++ {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			fmt.Fprintf(c, "guest says hi\n")
			c.Close()
			say("dialed %s", addr)
			return
		}
		lastErr = err
		time.Sleep(200 * time.Millisecond)
	}
	say("dial %s failed: %v", addr, lastErr)
}

const (
	wdiocSetTimeout = 0xc0045706 // _IOWR('W', 6, int)
	wdiocKeepalive  = 0x80045705 // _IOR('W', 5, int)
)

func armWatchdog(seconds string) {
	var n int32
	if _, err := fmt.Sscan(seconds, &n); err != nil {
		say("watchdog timeout %q: %v", seconds, err)
		return
	}
	f, err := os.OpenFile("/dev/watchdog", os.O_WRONLY, 0)
	if err != nil {
		say("watchdog: %v", err)
		return
	}
	// Never closed and never written again: the timer runs out.
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), wdiocSetTimeout, uintptr(unsafe.Pointer(&n))); e != 0 {
		say("watchdog set timeout: %v", e)
	}
	if _, err := f.Write([]byte{'1'}); err != nil {
		say("watchdog pet: %v", err)
	}
	say("watchdog armed %ds, not petting", n)
	forever()
}

// forever blocks without tripping Go's deadlock detector (select{} with no
// other goroutine makes the runtime exit, and PID 1 exiting panics the
// kernel).
func forever() {
	for {
		time.Sleep(time.Hour)
	}
}

func waitPowerButton() {
	evs, _ := filepath.Glob("/dev/input/event*")
	pressed := make(chan string, 1)
	var files []*os.File
	for _, p := range evs {
		f, err := os.Open(p)
		if err != nil {
			say("open %s: %v", p, err)
			continue
		}
		files = append(files, f)
	}
	// Opened before the marker: a press right after it is not missed.
	say("waiting for the power button (%s)", strings.Join(evs, " "))
	for _, f := range files {
		go func(f *os.File) {
			p := f.Name()
			defer f.Close()
			var ev [24]byte // struct input_event on 64-bit: timeval, type, code, value
			for {
				if _, err := f.Read(ev[:]); err != nil {
					return
				}
				typ := binary.LittleEndian.Uint16(ev[16:])
				code := binary.LittleEndian.Uint16(ev[18:])
				if typ == 1 && code == 116 { // EV_KEY, KEY_POWER
					pressed <- p
					return
				}
			}
		}(f)
	}
	say("power button pressed on %s", <-pressed)
}

// printEK derives the ECC endorsement key from the TPM's endorsement seed
// (kept in swtpm's state directory) and prints a digest of its public part.
func printEK() {
	tpm, err := linuxtpm.Open("/dev/tpmrm0")
	if err != nil {
		say("ek: open: %v", err)
		return
	}
	defer tpm.Close()
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(tpm2.ECCEKTemplate),
	}.Execute(tpm)
	if err != nil {
		say("ek: create primary: %v", err)
		return
	}
	_, _ = tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(tpm)
	sum := sha256.Sum256(rsp.OutPublic.Bytes())
	say("ek %x", sum[:8])
}

func dhcp(ifname string) {
	link, err := waitLink(ifname)
	if err == nil {
		err = netlink.LinkSetUp(link)
	}
	if err != nil {
		say("dhcp %s failed: %v", ifname, err)
		return
	}
	c, err := nclient4.New(ifname)
	if err != nil {
		say("dhcp %s failed: %v", ifname, err)
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lease, err := c.Request(ctx)
	if err != nil {
		say("dhcp %s failed: %v", ifname, err)
		return
	}
	ones, _ := lease.ACK.SubnetMask().Size()
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: lease.ACK.YourIPAddr, Mask: lease.ACK.SubnetMask()}}
	if err := netlink.AddrAdd(link, addr); err != nil {
		say("dhcp %s: add %s: %v", ifname, addr, err)
		return
	}
	say("dhcp %s %s/%d from %s", ifname, lease.ACK.YourIPAddr, ones, lease.ACK.ServerIPAddr)
}
