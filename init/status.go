package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/otgate/otgate/internal/initstatus"
)

// maxRequest bounds what init reads of one status request.
const maxRequest = 4 << 10

// serveStatus answers the status socket at path (mode 0600): one CBOR
// request per connection.
func (in *initProc) serveStatus(path string) (net.Listener, error) {
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("status socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("status socket %s: %w", path, err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				in.log.Printf("status socket: accept: %v", err)
				time.Sleep(100 * time.Millisecond)
				continue
			}
			go guard(in.log, "status request", func() { in.answer(c) })
		}
	}()
	return ln, nil
}

func (in *initProc) answer(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var req initstatus.Request
	var resp initstatus.Response
	// A request is a few bytes: read no more than maxRequest of whatever
	// a client sends (the decoder would buffer all of it in PID 1).
	r := &countingReader{r: io.LimitReader(c, maxRequest)}
	if err := initstatus.DecMode().NewDecoder(r).Decode(&req); err != nil {
		resp.Error = "bad request: " + requestError(err, r.n)
	} else {
		switch req.Op {
		case initstatus.OpStatus:
			resp.Status = in.status()
		case initstatus.OpLog:
			resp.Log = in.log.Lines()
		default:
			resp.Error = fmt.Sprintf("unknown op %q (want %q or %q)", req.Op, initstatus.OpStatus, initstatus.OpLog)
		}
	}
	initstatus.EncMode().NewEncoder(c).Encode(resp)
}

// requestError says what is wrong with a request whose decoding failed
// with err after n bytes: the decoder's "unexpected EOF" alone named
// neither a request over the limit nor one cut short.
func requestError(err error, n int64) string {
	if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return err.Error()
	}
	switch {
	case n >= maxRequest:
		return fmt.Sprintf("larger than %d bytes (read no further)", maxRequest)
	case n == 0:
		return "empty (the connection ended before a request)"
	}
	return fmt.Sprintf("request ends after %d bytes, inside a CBOR item", n)
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

func (in *initProc) status() *initstatus.Status {
	st := &initstatus.Status{
		Hostname: in.cfg.Hostname, Board: in.cfg.Board, ImageID: in.cfg.ImageID,
		BootTime: in.started, Uptime: in.uptime(), Ready: in.isReady(),
		Perm: initstatus.Perm{Device: in.perm.Device, FSType: in.perm.FSType, Size: in.perm.Size,
			Boots: in.perm.Boots, Warning: in.perm.Warning, Grown: in.perm.Grown, PreviousRun: in.previousRun()},
		InitRSS: selfRSS(), ConfigError: in.configErr, FirewallError: in.firewallErr, Measurement: in.measurement,
	}
	if in.sup != nil {
		st.Services = in.sup.snapshot()
	}
	if in.wd != nil {
		pet, last, note := in.wd.state()
		if in.wd.timeout == 0 { // the device did not say
			note = strings.TrimSuffix("timeout unknown; "+note, "; ")
		}
		st.Watchdog = initstatus.Watchdog{Device: in.wd.path, Timeout: in.wd.timeout, Petting: pet, LastPet: last, Note: note}
	} else if in.cfg.Watchdog.Device != "" {
		st.Watchdog = initstatus.Watchdog{Device: in.cfg.Watchdog.Device, Timeout: in.cfg.Watchdog.Timeout, Note: "could not open"}
	}
	return st
}

// selfRSS reads VmRSS from /proc/self/status, in bytes (0 if unknown).
func selfRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
