package audit

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"

	"github.com/fxamacker/cbor/v2"
)

const (
	// fileMagic starts every log file.
	fileMagic = "OTGAUD1\n"
	// frameHeaderSize is length (4) + CRC32C (4).
	frameHeaderSize = 8
	// MaxRecordSize bounds one record payload; a larger length field is
	// corruption, never a torn tail.
	MaxRecordSize = 1 << 20
)

// castagnoli is made on first use, not at package init: every service of
// the multi-call binary links this package, and building the table (with
// its SSE4.2 folding tables) cost ~12 ms of each process's start under
// QEMU/TCG.
var castagnoli = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })

// appendFrame appends the framed payload to dst.
func appendFrame(dst, payload []byte) []byte {
	var h [frameHeaderSize]byte
	binary.BigEndian.PutUint32(h[:4], uint32(len(payload)))
	t := castagnoli()
	c := crc32.Update(0, t, h[:4])
	c = crc32.Update(c, t, payload)
	binary.BigEndian.PutUint32(h[4:], c)
	dst = append(dst, h[:]...)
	return append(dst, payload...)
}

// TornTail describes bytes after the last complete record of the newest
// file that an interrupted write left behind.
type TornTail struct {
	File   string
	Offset int64 // where the torn bytes start
	Size   int64 // how many bytes
	Reason string
}

func (t *TornTail) String() string {
	return fmt.Sprintf("%s: torn tail of %d bytes at offset %d (%s)", t.File, t.Size, t.Offset, t.Reason)
}

// errTorn is returned by frameScanner.next for a torn tail; whether that
// is acceptable depends on the file being the newest.
type errTorn struct{ tail TornTail }

func (e *errTorn) Error() string { return e.tail.String() }

// Sentinel errors wrapped by a *Problem.
var (
	ErrFraming   = errors.New("bad framing")
	ErrCRC       = errors.New("CRC mismatch")
	ErrTruncated = errors.New("file truncated")
)

// frameScanner reads frames from one file whose size is known up front.
type frameScanner struct {
	name string
	r    *bufio.Reader
	off  int64 // offset of the next frame
	size int64
	buf  []byte
}

// newFrameScanner checks the magic and positions at the first frame.
func newFrameScanner(f *os.File, name string) (*frameScanner, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", name, err)
	}
	s := &frameScanner{name: name, r: bufio.NewReaderSize(f, 256<<10), size: st.Size()}
	var m [len(fileMagic)]byte
	if _, err := io.ReadFull(s.r, m[:]); err != nil || string(m[:]) != fileMagic {
		return nil, &Problem{File: name, Offset: 0, Err: fmt.Errorf("%w: missing file magic %q", ErrFraming, fileMagic)}
	}
	s.off = int64(len(fileMagic))
	return s, nil
}

// next returns the payload of the next frame (valid until the next call)
// and its offset; io.EOF at a clean end; *errTorn for a torn tail; a
// *Problem for corruption.
func (s *frameScanner) next() ([]byte, int64, error) {
	off := s.off
	remaining := s.size - off
	if remaining == 0 {
		return nil, off, io.EOF
	}
	if remaining < frameHeaderSize {
		return nil, off, s.torn(off, remaining, "partial frame header")
	}
	var h [frameHeaderSize]byte
	if _, err := io.ReadFull(s.r, h[:]); err != nil {
		return nil, off, s.readErr(off, err)
	}
	n := int64(binary.BigEndian.Uint32(h[:4]))
	if n == 0 || n > MaxRecordSize {
		if s.restZero(h[:]) {
			return nil, off, s.torn(off, remaining, "zero-filled")
		}
		return nil, off, &Problem{File: s.name, Offset: off, Err: fmt.Errorf("%w: record length %d (must be 1..%d)", ErrFraming, n, MaxRecordSize)}
	}
	if frameHeaderSize+n > remaining {
		have := remaining - frameHeaderSize
		if int64(cap(s.buf)) < have {
			s.buf = make([]byte, have)
		}
		p := s.buf[:have]
		if _, err := io.ReadFull(s.r, p); err != nil {
			return nil, off, s.readErr(off, err)
		}
		if m, ok := damagedLength(h, p); ok {
			return nil, off, &Problem{File: s.name, Offset: off, Err: fmt.Errorf("%w: record length %d runs past the end of the file, but a complete record of %d bytes with a matching CRC follows the header (a damaged length field, not a torn write)", ErrFraming, n, m)}
		}
		return nil, off, s.torn(off, remaining, fmt.Sprintf("record of %d bytes cut at %d", n, have))
	}
	if int64(cap(s.buf)) < n {
		s.buf = make([]byte, n)
	}
	p := s.buf[:n]
	if _, err := io.ReadFull(s.r, p); err != nil {
		return nil, off, s.readErr(off, err)
	}
	t := castagnoli()
	c := crc32.Update(0, t, h[:4])
	c = crc32.Update(c, t, p)
	if c != binary.BigEndian.Uint32(h[4:]) {
		if off+frameHeaderSize+n == s.size {
			// A length field damaged so that it ends exactly at the end
			// of the file looks like a torn last record; the records
			// it swallowed say otherwise (as for a length past the end).
			if m, ok := damagedLength(h, p); ok {
				return nil, off, &Problem{File: s.name, Offset: off, Err: fmt.Errorf("%w: record length %d reaches the end of the file and fails its CRC, but a complete record of %d bytes with a matching CRC follows the header (a damaged length field, not a torn write)", ErrFraming, n, m)}
			}
			return nil, off, s.torn(off, remaining, "last record fails its CRC")
		}
		return nil, off, &Problem{File: s.name, Offset: off, Err: fmt.Errorf("%w: record of %d bytes", ErrCRC, n)}
	}
	s.off = off + frameHeaderSize + n
	return p, off, nil
}

// damagedLength reports whether a frame whose header h declares a length
// running past the end of the file is a damaged length field rather than a
// torn write: rest (the bytes after the header, to the end of the file)
// starts with one complete CBOR item whose length m, put in place of the
// declared one, makes the header's CRC match. A torn write leaves a prefix
// of its record, never a complete one (a record is one CBOR map), and
// zeros or other garbage match the CRC only by a 2^-32 chance.
func damagedLength(h [frameHeaderSize]byte, rest []byte) (int, bool) {
	var raw cbor.RawMessage
	after, err := decMode.UnmarshalFirst(rest, &raw)
	if err != nil {
		return 0, false
	}
	m := len(rest) - len(after)
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(m))
	t := castagnoli()
	c := crc32.Update(crc32.Update(0, t, l[:]), t, rest[:m])
	return m, c == binary.BigEndian.Uint32(h[4:])
}

func (s *frameScanner) torn(off, size int64, why string) error {
	return &errTorn{TornTail{File: s.name, Offset: off, Size: size, Reason: why}}
}

func (s *frameScanner) readErr(off int64, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		// The file shrank under us.
		return &Problem{File: s.name, Offset: off, Err: fmt.Errorf("%w: file shorter than its size while reading", ErrTruncated)}
	}
	return &Problem{File: s.name, Offset: off, Err: fmt.Errorf("read: %w", err)}
}

// restZero reports whether the already-read head and everything after it
// up to the end of the file are zero bytes.
func (s *frameScanner) restZero(head []byte) bool {
	for _, b := range head {
		if b != 0 {
			return false
		}
	}
	for {
		b, err := s.r.ReadByte()
		if err != nil {
			return errors.Is(err, io.EOF)
		}
		if b != 0 {
			return false
		}
	}
}
