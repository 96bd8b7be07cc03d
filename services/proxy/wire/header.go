package wire

import (
	"errors"
	"fmt"
	"io"
)

// ALPN protocol names.
const (
	ALPNLogin  = "otgate-login/1"
	ALPNTunnel = "otgate-tunnel/1"
)

// HeaderVersion is the only tunnel header version this package speaks.
const HeaderVersion = 1

// Limits of the header fields.
const (
	MaxAssetLen    = 63
	MaxProtocolLen = 32
	// MaxHeaderLen is the longest valid encoded header.
	MaxHeaderLen = 4 + 1 + MaxAssetLen + 1 + MaxProtocolLen
)

// ErrHeader is wrapped by every header decoding error.
var ErrHeader = errors.New("bad tunnel header")

// Header is the first thing a client sends on a tunnel stream.
type Header struct {
	Asset    string
	Protocol string
}

// checkName validates an asset or protocol name: lower-case letters,
// digits, '-', '_', '.', starting with a letter or digit (the site file's
// rule), 1..max bytes.
func checkName(what, s string, maxLen int) error {
	if len(s) == 0 || len(s) > maxLen {
		return fmt.Errorf("%w: %s name of %d bytes (want 1..%d)", ErrHeader, what, len(s), maxLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '-' || c == '_' || c == '.') && i > 0:
		default:
			return fmt.Errorf("%w: %s name %q: byte %d is %q (want lower-case letters, digits, '-', '_', '.', starting with a letter or digit)", ErrHeader, what, s, i, c)
		}
	}
	return nil
}

// Validate checks both names.
func (h Header) Validate() error {
	if err := checkName("asset", h.Asset, MaxAssetLen); err != nil {
		return err
	}
	return checkName("protocol", h.Protocol, MaxProtocolLen)
}

// AppendBinary appends the encoded header to b.
func (h Header) AppendBinary(b []byte) ([]byte, error) {
	if err := h.Validate(); err != nil {
		return b, err
	}
	b = append(b, 'O', 'T', HeaderVersion, 0, byte(len(h.Asset)))
	b = append(b, h.Asset...)
	b = append(b, byte(len(h.Protocol)))
	return append(b, h.Protocol...), nil
}

// DecodeHeader decodes a header from the start of b and returns it with
// the number of bytes it used. A b that is a valid but incomplete prefix
// returns io.ErrUnexpectedEOF; anything else invalid an error wrapping
// ErrHeader that says what and where.
func DecodeHeader(b []byte) (Header, int, error) {
	if len(b) < 5 {
		if err := checkPrefix(b); err != nil {
			return Header{}, 0, err
		}
		return Header{}, 0, io.ErrUnexpectedEOF
	}
	if err := checkPrefix(b[:4]); err != nil {
		return Header{}, 0, err
	}
	an := int(b[4])
	if an == 0 || an > MaxAssetLen {
		return Header{}, 0, fmt.Errorf("%w: byte 4: asset name length %d (want 1..%d)", ErrHeader, an, MaxAssetLen)
	}
	if len(b) < 5+an+1 {
		return Header{}, 0, io.ErrUnexpectedEOF
	}
	pn := int(b[5+an])
	if pn == 0 || pn > MaxProtocolLen {
		return Header{}, 0, fmt.Errorf("%w: byte %d: protocol name length %d (want 1..%d)", ErrHeader, 5+an, pn, MaxProtocolLen)
	}
	n := 5 + an + 1 + pn
	if len(b) < n {
		return Header{}, 0, io.ErrUnexpectedEOF
	}
	h := Header{Asset: string(b[5 : 5+an]), Protocol: string(b[6+an : n])}
	if err := h.Validate(); err != nil {
		return Header{}, 0, err
	}
	return h, n, nil
}

func checkPrefix(b []byte) error {
	want := [4]byte{'O', 'T', HeaderVersion, 0}
	names := [4]string{"magic", "magic", "version", "flags"}
	for i := range b {
		if i >= 4 {
			break
		}
		if b[i] != want[i] {
			if i == 2 {
				return fmt.Errorf("%w: byte 2: version %d (this gate speaks %d)", ErrHeader, b[i], HeaderVersion)
			}
			return fmt.Errorf("%w: byte %d: %s 0x%02x (want 0x%02x)", ErrHeader, i, names[i], b[i], want[i])
		}
	}
	return nil
}

// ReadHeader reads exactly one header from r, byte-exact: it never reads
// past the header, so the stream's payload stays in r.
func ReadHeader(r io.Reader) (Header, error) {
	var buf [MaxHeaderLen]byte
	// magic, version, flags, asset length
	if _, err := io.ReadFull(r, buf[:5]); err != nil {
		return Header{}, fmt.Errorf("read tunnel header: %w", eof(err))
	}
	if err := checkPrefix(buf[:4]); err != nil {
		return Header{}, err
	}
	an := int(buf[4])
	if an == 0 || an > MaxAssetLen {
		return Header{}, fmt.Errorf("%w: byte 4: asset name length %d (want 1..%d)", ErrHeader, an, MaxAssetLen)
	}
	if _, err := io.ReadFull(r, buf[5:5+an+1]); err != nil {
		return Header{}, fmt.Errorf("read tunnel header: %w", eof(err))
	}
	pn := int(buf[5+an])
	if pn == 0 || pn > MaxProtocolLen {
		return Header{}, fmt.Errorf("%w: byte %d: protocol name length %d (want 1..%d)", ErrHeader, 5+an, pn, MaxProtocolLen)
	}
	if _, err := io.ReadFull(r, buf[6+an:6+an+pn]); err != nil {
		return Header{}, fmt.Errorf("read tunnel header: %w", eof(err))
	}
	h, _, err := DecodeHeader(buf[:6+an+pn])
	return h, err
}

func eof(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
