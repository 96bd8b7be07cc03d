package initstatus

import (
	"fmt"
	"net"
	"time"
)

// Client talks to init's status socket.
type Client struct {
	path    string
	timeout time.Duration
}

// Dial checks that path is a reachable status socket and returns a client.
// Each call opens its own connection (one request per connection).
func Dial(path string) (*Client, error) {
	c := &Client{path: path, timeout: 5 * time.Second}
	conn, err := net.DialTimeout("unix", path, c.timeout)
	if err != nil {
		return nil, fmt.Errorf("initstatus: dial %s: %w", path, err)
	}
	conn.Close()
	return c, nil
}

func (c *Client) call(op string) (*Response, error) {
	conn, err := net.DialTimeout("unix", c.path, c.timeout)
	if err != nil {
		return nil, fmt.Errorf("initstatus: dial %s: %w", c.path, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return nil, fmt.Errorf("initstatus: %s: %w", c.path, err)
	}
	if err := encMode.NewEncoder(conn).Encode(Request{Op: op}); err != nil {
		return nil, fmt.Errorf("initstatus: %s: send %q: %w", c.path, op, err)
	}
	var resp Response
	if err := decMode.NewDecoder(conn).Decode(&resp); err != nil {
		return nil, fmt.Errorf("initstatus: %s: read answer to %q: %w", c.path, op, err)
	}
	if resp.Error != "" {
		return nil, fmt.Errorf("%w: %s: %s", ErrRemote, op, resp.Error)
	}
	return &resp, nil
}

// Status asks for a snapshot.
func (c *Client) Status() (*Status, error) {
	r, err := c.call(OpStatus)
	if err != nil {
		return nil, err
	}
	if r.Status == nil {
		return nil, fmt.Errorf("initstatus: %s: empty status answer", c.path)
	}
	return r.Status, nil
}

// Log returns init's recent log lines, oldest first.
func (c *Client) Log() ([]string, error) {
	r, err := c.call(OpLog)
	if err != nil {
		return nil, err
	}
	return r.Log, nil
}
