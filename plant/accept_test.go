package plant

import (
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// Running out of file descriptors makes Accept fail (EMFILE) while the
// connection waits in the backlog; the server keeps accepting once
// descriptors are free again and serves it. It used to stop serving (and
// wait forever for its open connections).
func TestServerSurvivesAcceptErrors(t *testing.T) {
	addr, _ := startServer(t)
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	read := rawRequest(1, 1, 3, 0, 0, 0, 1)
	exchange(t, first, read)

	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	// The limit bounds descriptor numbers: leave room for the lowest free
	// one only, which the client's socket of the next dial takes; the
	// server's accept finds none.
	free := 0
	for ; ; free++ {
		if _, err := os.Stat(fmt.Sprintf("/proc/self/fd/%d", free)); os.IsNotExist(err) {
			break
		}
	}
	low := old
	low.Cur = uint64(free + 1)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	second, derr := net.Dial("tcp", addr)
	time.Sleep(300 * time.Millisecond) // the server's accept fails meanwhile
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	if derr != nil {
		t.Fatalf("dial under the low limit: %v", derr)
	}
	defer second.Close()
	exchange(t, second, read)
	exchange(t, first, read)
}
