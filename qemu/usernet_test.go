package qemu

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"regexp"
	"testing"
	"time"
)

// The guest on user networking reaches nothing but its forwarded ports:
// slirp runs restricted, so a connection the guest opens (here to the
// host's loopback through slirp's 10.0.2.2, which without the restriction
// NATs to any address the host can reach) is refused, while the hostfwd
// into the guest still works. The listener is on 127.0.0.1: no test
// traffic leaves loopback either way.
func TestUserNetGuestCannotConnectOut(t *testing.T) {
	b := mustBoard(t, "qemu-x86_64")
	requireQEMU(t, b)
	img := testImage(t, b)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		accepted <- line
	}()
	port := l.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vm := StartT(t, b, "", img, WithUserNet(HostForward{GuestPort: 7777}), WithCmdline(
		"testinit.addr=eth0=10.0.2.15/24", "testinit.listen=7777",
		fmt.Sprintf("testinit.dial=10.0.2.2:%d", port), "testinit.then=wait"))
	line, err := vm.WaitFor(ctx, regexp.MustCompile(`^testinit: dial(ed)? 10\.0\.2\.2:`))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-accepted:
		t.Fatalf("the guest connected out through user networking (%q; console %q): slirp is not restricted", got, line)
	default:
	}
	if !regexp.MustCompile(`^testinit: dial 10\.0\.2\.2:\d+ failed`).MatchString(line) {
		t.Fatalf("console %q, want the guest's dial to fail", line)
	}
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", vm.HostPort(7777)), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if got, err := bufio.NewReader(c).ReadString('\n'); err != nil || got != "hello from testinit\n" {
		t.Fatalf("hostfwd into the restricted guest: got %q, %v", got, err)
	}
}
