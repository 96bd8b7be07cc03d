// Command testsvc is a service for testing init's supervisor: it becomes
// ready, crashes, hangs or reports the status of init, as -mode says. It is
// placed only in test images.
//
//	-mode=steady        notify ready, run until SIGTERM, exit 0
//	-mode=flaky         count starts in -state; exit 1 before notifying for
//	                    the first -crashes starts, then behave like steady
//	-mode=crash         exit 1 after ~100ms, never ready
//	-mode=status        wait until init's status socket reports every
//	                    critical service ready (or failed for good), print
//	                    "testsvc: status" and the table `otgate status`
//	                    prints, exit 0 (-after D: sleep D first)
//	-mode=hang-on-term  notify ready, ignore SIGTERM (init must SIGKILL it)
//	-mode=refuse        send STATUS=<-note> and exit bootcfg.ExitNoRestart
//	-mode=netdump       wait for -wait-addr interfaces to have an IPv4
//	                    address, print every link with its addresses, the
//	                    nftables tables, and for -probe ADDR:PORT whether a
//	                    TCP connection from the gate gets through as root
//	                    and as the proxy (uid and mark); exit 0; the kernel
//	                    command line's otgate.test.netdump_wait=IF,... and
//	                    otgate.test.netdump_probe=ADDR:PORT,... add more
//	-mode=pcrs          print the TPM's SHA-256 PCRs 0-23 from sysfs; exit 0
//
// -mode=status with -wait-for NAME first waits until that service has
// settled (ready, done or failed).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
	"github.com/otgate/otgate/internal/initstatus"
	"github.com/otgate/otgate/internal/ready"
)

// Flags of the newer modes.
var waitFor, note, waitAddr, probe string

func main() {
	mode := flag.String("mode", "steady", "steady, flaky, crash, status or hang-on-term")
	crashes := flag.Int("crashes", 1, "flaky: crash on this many starts")
	state := flag.String("state", "", "flaky: file counting starts")
	socket := flag.String("socket", bootcfg.StatusSocket, "status: init's status socket")
	wait := flag.Duration("wait", 60*time.Second, "status: how long to wait for readiness")
	after := flag.Duration("after", 0, "status: sleep this long first")
	flag.StringVar(&waitFor, "wait-for", "", "status: wait until this service is ready, done or failed")
	flag.StringVar(&note, "note", "test service refuses to run", "refuse: the STATUS note")
	flag.StringVar(&waitAddr, "wait-addr", "", "netdump: comma-separated interfaces that must have an IPv4 address first")
	flag.StringVar(&probe, "probe", "", "netdump: ADDR:PORT to try a TCP connection to")
	flag.Parse()
	time.Sleep(*after)
	if err := run(*mode, *crashes, *state, *socket, *wait); err != nil {
		fmt.Fprintf(os.Stderr, "testsvc: %v\n", err)
		os.Exit(1)
	}
}

func run(mode string, crashes int, state, socket string, wait time.Duration) error {
	switch mode {
	case "steady":
		return steady(false)
	case "hang-on-term":
		return steady(true)
	case "crash":
		time.Sleep(100 * time.Millisecond)
		fmt.Println("testsvc: crashing")
		os.Exit(1)
	case "flaky":
		if state == "" {
			return errors.New("-mode=flaky needs -state FILE")
		}
		n, err := countStart(state)
		if err != nil {
			return err
		}
		if n <= crashes {
			fmt.Printf("testsvc: start %d of %d crashing starts: exiting 1\n", n, crashes)
			os.Exit(1)
		}
		return steady(false)
	case "status":
		return printStatus(socket, wait)
	case "refuse":
		fmt.Printf("testsvc: refusing: %s\n", note)
		if err := ready.Status(note); err != nil {
			return err
		}
		os.Exit(bootcfg.ExitNoRestart)
	case "netdump":
		return netdump(wait)
	case "pcrs":
		return printPCRs()
	}
	return fmt.Errorf("unknown -mode %q (want steady, flaky, crash, status, hang-on-term, refuse, netdump or pcrs)", mode)
}

func steady(ignoreTerm bool) error {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	if err := ready.Notify(); err != nil {
		return err
	}
	fmt.Println("testsvc: ready")
	for range sig {
		if ignoreTerm {
			fmt.Println("testsvc: SIGTERM ignored")
			continue
		}
		fmt.Println("testsvc: SIGTERM, exiting")
		return nil
	}
	return nil
}

// countStart increments the decimal counter in path and returns it.
func countStart(path string) (int, error) {
	n := 0
	b, err := os.ReadFile(path)
	if err == nil {
		if n, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	n++
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(n)), 0o644); err != nil {
		return 0, err
	}
	return n, os.Rename(tmp, path)
}

func printStatus(socket string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		st, err := status(socket)
		if err == nil && criticalSettled(st) && settled(st, waitFor) {
			fmt.Println("testsvc: status")
			return initstatus.WriteTable(os.Stdout, st)
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("critical services not settled (ready, done or failed)")
			}
			return fmt.Errorf("status after %s: %w", wait, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func status(socket string) (*initstatus.Status, error) {
	c, err := initstatus.Dial(socket)
	if err != nil {
		return nil, err
	}
	return c.Status()
}

// settled: the named service (if any) is ready, done or failed.
func settled(st *initstatus.Status, name string) bool {
	if name == "" {
		return true
	}
	for _, s := range st.Services {
		if s.Name == name {
			switch s.State {
			case initstatus.StateReady, initstatus.StateDone, initstatus.StateFailed:
				return true
			}
		}
	}
	return false
}

// criticalSettled: every critical service except this process is ready,
// done, or failed for good (a gate in quarantine never gets ready, and its
// status table is what must be shown then).
func criticalSettled(st *initstatus.Status) bool {
	for _, s := range st.Services {
		if !s.Critical || s.PID == os.Getpid() {
			continue
		}
		switch s.State {
		case initstatus.StateReady, initstatus.StateDone, initstatus.StateFailed:
		default:
			return false
		}
	}
	return true
}
