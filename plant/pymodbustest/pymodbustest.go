// Package pymodbustest starts the Modbus device made with pymodbus
// (plant/testdata/modbus_server.py) for tests that want a device with no
// Modbus code of this project in it.
package pymodbustest

import (
	"bufio"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Script is the device's Python source.
func Script(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("pymodbustest: cannot locate its own source to find the script")
	}
	return filepath.Join(filepath.Dir(file), "..", "testdata", "modbus_server.py")
}

// Start runs the device on host:port (port "0": any free one), its
// command line behind prefix (e.g. nsenter into a network namespace; nil
// for none), until the test ends, and returns the port it listens on.
// Options are the script's (--units 1,2,3 to serve several unit ids,
// --journal FILE to record what reaches the device). It skips the test
// when python3-pymodbus is not installed.
func Start(t testing.TB, prefix []string, host, port string, options ...string) string {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import pymodbus.server").Run(); err != nil {
		t.Skip("python3-pymodbus not installed (apt-get install python3-pymodbus)")
	}
	args := append(append([]string(nil), prefix...), "/usr/bin/python3", Script(t), host, port)
	args = append(args, options...)
	cmd := exec.Command(args[0], args[1:]...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	first := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Scan()
		first <- sc.Text()
		io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-first:
		got, ok := strings.CutPrefix(line, "listening on ")
		if !ok || got == "" || (port != "0" && got != port) {
			t.Fatalf("pymodbus device printed %q, want \"listening on %s\"\n%s", line, port, stderr.String())
		}
		return got
	case <-time.After(30 * time.Second):
		t.Fatalf("pymodbus device did not start within 30 s\n%s", stderr.String())
	}
	return ""
}
