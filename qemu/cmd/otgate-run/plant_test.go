package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otgate/otgate/qemu/lab"
)

func TestMain(m *testing.M) {
	if os.Getenv("OTGATE_RUN_TEST_HELPER") == "terminal" {
		os.Exit(terminalJob(os.Getenv("OTGATE_RUN_TEST_PLANT")))
	}
	os.Exit(m.Run())
}

// terminalJob is otgate-run's part in TestPlantOutlivesTheTerminalsCtrlC,
// run as a terminal's foreground job (a process group of its own): the
// lab and the real plant simulator started as otgate-run starts it, then
// at the stop signal what otgate-run does while the gate powers down and
// after: it still reads the plant (the gate's OT traffic), then stops it.
// It reports on standard output.
func terminalJob(plantBin string) int {
	s := watchStop()
	defer s.release()
	l, err := lab.New(s.ctx)
	if err != nil {
		fmt.Println("lab:", err)
		return 1
	}
	defer l.Close()
	p, err := startPlant(s.ctx, l, plantBin)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("ready")
	<-s.ctx.Done()
	fmt.Println("stop signal:", s.signal())
	if err := readPlant(l); err != nil {
		fmt.Println("plant after the stop signal:", err)
	} else {
		fmt.Println("plant after the stop signal: answers")
	}
	if err := p.stop(); err != nil {
		fmt.Println("plant stop:", err)
	} else {
		fmt.Println("plant stop: clean")
	}
	fmt.Println("plant log:", strings.Join(p.lastLog(), " | "))
	return 0
}

// readPlant reads holding register 0 of the plant over Modbus/TCP, in the
// plant namespace.
func readPlant(l *lab.Lab) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := l.Plant.DialContext(ctx, "tcp", lab.PlantIP().String()+":502")
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	// Transaction 7, unit 1, read holding registers (3) from 0, one.
	if _, err := c.Write([]byte{0, 7, 0, 0, 0, 6, 1, 3, 0, 0, 0, 1}); err != nil {
		return err
	}
	reply := make([]byte, 11)
	if _, err := io.ReadFull(c, reply); err != nil {
		return err
	}
	if !bytes.Equal(reply[:9], []byte{0, 7, 0, 0, 0, 5, 1, 3, 2}) {
		return fmt.Errorf("reply % x, want a one-register answer to transaction 7", reply)
	}
	return nil
}

// The terminal's Ctrl-C goes to its foreground process group, otgate-run's.
// The plant simulator, in a process group of its own, does not get it: it
// still answers while the gate powers down, and otgate-run stops it after
// (SIGTERM), cleanly. With the plant in otgate-run's group it stopped at
// once on the Ctrl-C ("interrupt, stopping" in its log).
func TestPlantOutlivesTheTerminalsCtrlC(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the lab needs root (network namespaces)")
	}
	for _, bin := range []string{"nsenter", "go"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s: %v", bin, err)
		}
	}
	plantBin := filepath.Join(t.TempDir(), "otgate-plant")
	if out, err := exec.Command("go", "build", "-o", plantBin, "github.com/otgate/otgate/plant/cmd/otgate-plant").CombinedOutput(); err != nil {
		t.Fatalf("go build otgate-plant: %v\n%s", err, out)
	}
	job := exec.Command(os.Args[0], "-test.run=^$")
	job.Env = append(os.Environ(), "OTGATE_RUN_TEST_HELPER=terminal", "OTGATE_RUN_TEST_PLANT="+plantBin)
	job.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	job.Stderr = os.Stderr
	stdout, err := job.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-job.Process.Pid, syscall.SIGKILL) })
	done := make(chan struct{})
	time.AfterFunc(2*time.Minute, func() {
		select {
		case <-done:
		default:
			syscall.Kill(-job.Process.Pid, syscall.SIGKILL)
		}
	})
	r := bufio.NewReader(stdout)
	if line, err := r.ReadString('\n'); err != nil || line != "ready\n" {
		rest, _ := io.ReadAll(r)
		job.Wait()
		t.Fatalf("job: %q %v\n%s", line, err, rest)
	}
	// Ctrl-C, as the terminal sends it: to the foreground process group.
	if err := syscall.Kill(-job.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(r)
	err = job.Wait()
	close(done)
	out := string(rest)
	if err != nil {
		t.Fatalf("job: %v\n%s", err, out)
	}
	for _, want := range []string{
		"stop signal: interrupt\n",
		"plant after the stop signal: answers\n",
		"plant stop: clean\n",
		"otgate-plant: terminated, stopping",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("job's report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "interrupt, stopping") {
		t.Errorf("the plant got the terminal's Ctrl-C:\n%s", out)
	}
}
