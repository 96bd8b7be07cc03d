package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// qmpClient is one QMP connection: commands are sent one at a time, each
// with an id of its own; a goroutine reads every message, records events
// and hands a reply to the command whose id it carries. A reply for a
// command that gave up waiting (its context ended) comes with that
// command's id and is dropped, so it is never taken for the answer to a
// later command; so is a reply without an id (QEMU answers so only to a
// request it could not parse, which this client does not send).
type qmpClient struct {
	conn net.Conn

	cmdMu sync.Mutex // one command in flight

	mu      sync.Mutex
	events  []Event
	lastID  uint64
	waiting string          // id of the command in flight, "" if none
	reply   chan qmpMessage // its reply (buffered: the reader never blocks)
	dropped []qmpMessage    // replies no command waited for (stale, no id)
	done    chan struct{}   // reader ended (QEMU closed the socket)
}

type qmpMessage struct {
	Return    json.RawMessage `json:"return"`
	Error     *qmpError       `json:"error"`
	Event     string          `json:"event"`
	Data      map[string]any  `json:"data"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
	QMP json.RawMessage `json:"QMP"`
	ID  any             `json:"id"`
}

type qmpError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

// dialQMP connects to QEMU's QMP socket, retrying until it accepts, alive
// reports QEMU gone, or ctx ends. It then negotiates capabilities.
func dialQMP(ctx context.Context, path string, alive func() bool) (*qmpClient, error) {
	var conn net.Conn
	for {
		var err error
		var d net.Dialer
		conn, err = d.DialContext(ctx, "unix", path)
		if err == nil {
			break
		}
		if !alive() {
			return nil, fmt.Errorf("qemu: QMP %s: QEMU exited before accepting: %w", path, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qemu: QMP %s: %w (last error: %v)", path, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if qmpConnectedHook != nil {
		qmpConnectedHook()
	}
	c := &qmpClient{conn: conn, done: make(chan struct{})}
	// Reading the greeting ends with ctx too: a QEMU that accepts but does
	// not greet (stopped, or stuck) must not hold Start's caller (make
	// run's Ctrl-C) past it.
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	r := bufio.NewReader(conn)
	// QEMU may send an event before the greeting: a connection made
	// while it starts can get the RESUME of the VM's start first (its
	// monitor emits events to a connected client before it has processed
	// the connection and greeted). Such events are recorded like any.
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			conn.Close()
			if ctx.Err() != nil {
				return nil, fmt.Errorf("qemu: QMP %s: read greeting: %w", path, ctx.Err())
			}
			return nil, fmt.Errorf("qemu: QMP %s: read greeting: %w", path, err)
		}
		var greet qmpMessage
		if err := json.Unmarshal(line, &greet); err != nil || (greet.QMP == nil && greet.Event == "") {
			conn.Close()
			return nil, fmt.Errorf("qemu: QMP %s: unexpected greeting %q", path, line)
		}
		if greet.QMP != nil {
			break
		}
		c.record(greet)
	}
	if !stop() {
		// ctx ended just as the greeting came: the deadline may be set.
		conn.Close()
		return nil, fmt.Errorf("qemu: QMP %s: %w", path, ctx.Err())
	}
	go c.read(r)
	if _, err := c.execute(ctx, "qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// qmpConnectedHook, when set (tests), runs when dialQMP has connected,
// before it reads the greeting.
var qmpConnectedHook func()

func (c *qmpClient) read(r *bufio.Reader) {
	defer close(c.done)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			var m qmpMessage
			if json.Unmarshal(line, &m) == nil {
				if m.Event != "" {
					c.record(m)
				} else {
					c.deliver(m)
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// deliver hands the reply m to the command in flight if it carries that
// command's id, and drops it otherwise: a late reply to a command that
// gave up, or a reply without an id.
func (c *qmpClient) deliver(m qmpMessage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id, ok := m.ID.(string); ok && c.waiting != "" && id == c.waiting {
		c.reply <- m // buffered, and only this one reply has this id
		c.waiting = ""
		return
	}
	if len(c.dropped) < maxDropped {
		c.dropped = append(c.dropped, m)
	}
}

// maxDropped bounds the dropped replies kept (the tests look at them).
const maxDropped = 16

// record appends the event m.
func (c *qmpClient) record(m qmpMessage) {
	ev := Event{Name: m.Event, Data: m.Data}
	if m.Timestamp != nil {
		ev.Time = time.Unix(m.Timestamp.Seconds, m.Timestamp.Microseconds*1000)
	}
	c.mu.Lock()
	c.events = append(c.events, ev)
	c.mu.Unlock()
}

// execute sends one command and waits for its reply.
func (c *qmpClient) execute(ctx context.Context, command string, args map[string]any) (json.RawMessage, error) {
	c.cmdMu.Lock()
	defer c.cmdMu.Unlock()
	c.mu.Lock()
	c.lastID++
	id := fmt.Sprintf("otgate-%d", c.lastID)
	reply := make(chan qmpMessage, 1)
	c.waiting, c.reply = id, reply
	c.mu.Unlock()
	// However this command ends, a reply that comes after it is stale.
	defer func() {
		c.mu.Lock()
		if c.waiting == id {
			c.waiting = ""
		}
		c.mu.Unlock()
	}()
	req := map[string]any{"execute": command, "id": id}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("qemu: QMP %s: encode: %w", command, err)
	}
	// What was asked, for the errors: the command and its arguments.
	asked := command
	if args != nil {
		a, _ := json.Marshal(args)
		asked += " " + string(a)
	}
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qemu: QMP %s: send: %w", command, err)
	}
	select {
	case m := <-reply:
		if m.Error != nil {
			return nil, fmt.Errorf("qemu: QMP %s: %s: %s", asked, m.Error.Class, m.Error.Desc)
		}
		return m.Return, nil
	case <-c.done:
		return nil, fmt.Errorf("qemu: QMP %s: %w (connection closed)", command, ErrExited)
	case <-ctx.Done():
		return nil, fmt.Errorf("qemu: QMP %s: %w", command, ctx.Err())
	}
}

func (c *qmpClient) snapshot() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Event(nil), c.events...)
}

func (c *qmpClient) close() error {
	err := c.conn.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
