package lab

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Namespace is a private network namespace held open by a file descriptor of
// this process. Nothing names it in /run/netns: it disappears when the
// descriptor is closed and no process lives in it any more.
type Namespace struct {
	name   string
	handle netns.NsHandle
	inode  uint64
}

// newNamespace creates a fresh network namespace without moving the calling
// goroutine into it.
func newNamespace(name string) (*Namespace, error) {
	type result struct {
		h   netns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("lab: namespace %s: get current namespace: %w", name, err)}
			return
		}
		defer orig.Close()
		h, err := netns.New() // unshare(CLONE_NEWNET) on this thread only
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("lab: namespace %s: unshare: %w", name, err)}
			return
		}
		if err := netns.Set(orig); err != nil {
			// The thread is stuck in the new namespace: leave it locked so
			// the runtime throws it away when this goroutine ends.
			h.Close()
			ch <- result{err: fmt.Errorf("lab: namespace %s: return to original namespace: %w", name, err)}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{h: h}
	}()
	r := <-ch
	if r.err != nil {
		return nil, r.err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(r.h), &st); err != nil {
		r.h.Close()
		return nil, fmt.Errorf("lab: namespace %s: fstat: %w", name, err)
	}
	return &Namespace{name: name, handle: r.h, inode: st.Ino}, nil
}

// Name is the role of the namespace ("lab" or "plant").
func (n *Namespace) Name() string { return n.name }

// Inode identifies the namespace: /proc/<pid>/ns/net of a process inside it
// reads "net:[<inode>]".
func (n *Namespace) Inode() uint64 { return n.inode }

// Path is a file path that refers to the namespace while the lab is open,
// usable with nsenter --net=PATH or setns(2).
func (n *Namespace) Path() string {
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(n.handle))
}

// Command returns a command that runs name with args inside the namespace
// (through nsenter). The child is killed if this process dies.
func (n *Namespace) Command(name string, args ...string) *exec.Cmd {
	return n.CommandContext(context.Background(), name, args...)
}

// CommandContext is Command with a context that kills the command.
func (n *Namespace) CommandContext(ctx context.Context, name string, args ...string) *exec.Cmd {
	full := append([]string{"--net=" + n.Path(), "--", name}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", full...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Do runs fn on an OS thread that has entered the namespace. Sockets created
// inside fn stay in the namespace after Do returns. fn must not rely on other
// goroutines for namespace-sensitive work: they run on other threads.
func (n *Namespace) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("lab: %s: get current namespace: %w", n.name, err)
			return
		}
		defer orig.Close()
		if err := netns.Set(n.handle); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("lab: %s: enter namespace: %w", n.name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it ends with this goroutine.
			errc <- fmt.Errorf("lab: %s: leave namespace: %w", n.name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Listen opens a listener inside the namespace.
func (n *Namespace) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: %s: listen %s %s: %w", n.name, network, addr, err)
	}
	return l, nil
}

// DialContext connects from inside the namespace. addr must hold an IP
// address, not a host name.
func (n *Namespace) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: %s: dial %s %s: %w", n.name, network, addr, err)
	}
	return c, nil
}

// Processes lists the ids of processes (other than this one) that have a
// thread in the namespace.
func (n *Namespace) Processes() []int {
	want := fmt.Sprintf("net:[%d]", n.inode)
	self := os.Getpid()
	var pids []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == self {
			continue
		}
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/ns/net", pid))
		for _, t := range tasks {
			if link, err := os.Readlink(t); err == nil && strings.TrimSpace(link) == want {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// close kills every process left in the namespace and drops this process's
// hold on it, so the kernel destroys it with all its interfaces.
func (n *Namespace) close() error {
	for _, pid := range n.Processes() {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	if n.handle == -1 {
		return nil
	}
	err := n.handle.Close()
	n.handle = -1
	if err != nil {
		return fmt.Errorf("lab: %s: close namespace: %w", n.name, err)
	}
	return nil
}
