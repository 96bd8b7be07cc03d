package qemu

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// A command QEMU refuses is reported with what was asked: the command and
// its arguments, then QEMU's error class and description.
func TestQMPErrorNamesTheRequest(t *testing.T) {
	sock := fakeQMP(t, func(c net.Conn) {
		c.Write([]byte(`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}}` + "\r\n"))
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if strings.Contains(line, `"qmp_capabilities"`) {
				answerQMP(t, c, line, `"return": {}`)
			} else {
				answerQMP(t, c, line, `"error": {"class": "DeviceNotFound", "desc": "Device 'nope' not found"}`)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := dialQMP(ctx, sock, func() bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	defer q.close()
	_, err = q.execute(ctx, "device_del", map[string]any{"id": "nope"})
	want := `qemu: QMP device_del {"id":"nope"}: DeviceNotFound: Device 'nope' not found`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}
