package identity

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
)

// swtpmConn is a TPM transport over one persistent connection to an swtpm
// "--server type=unixio" socket. go-tpm's linuxudstpm dials a new
// connection for every command, which swtpm (one client at a time, small
// listen backlog) answers with ECONNREFUSED under load; it also reads a
// response with a single read. This keeps one connection and reads each
// response by the size in its header.
type swtpmConn struct {
	path string
	conn net.Conn
}

// maxResponse bounds a TPM response (the largest TPM buffers are ~4 KiB).
const maxResponse = 64 << 10

func openSWTPM(path string) (transport.TPMCloser, error) {
	var c net.Conn
	var err error
	// swtpm serves one client at a time: wait while another (a previous
	// process, a test's CLI call) still holds the connection.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err = net.Dial("unix", path)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	return &swtpmConn{path: path, conn: c}, nil
}

func (s *swtpmConn) Send(cmd []byte) ([]byte, error) {
	if _, err := s.conn.Write(cmd); err != nil {
		return nil, fmt.Errorf("swtpm %s: send: %w", s.path, err)
	}
	hdr := make([]byte, 10) // tag(2) size(4) code(4)
	if _, err := io.ReadFull(s.conn, hdr); err != nil {
		return nil, fmt.Errorf("swtpm %s: read response header: %w", s.path, err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > maxResponse {
		return nil, fmt.Errorf("swtpm %s: bad response size %d", s.path, size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(s.conn, rsp[10:]); err != nil {
		return nil, fmt.Errorf("swtpm %s: read response: %w", s.path, err)
	}
	return rsp, nil
}

func (s *swtpmConn) Close() error { return s.conn.Close() }
