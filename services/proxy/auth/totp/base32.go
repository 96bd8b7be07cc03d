package totp

import (
	"encoding/base32"
	"fmt"
	"strings"
)

// secretEncoding is RFC 4648 base32 without padding, as the Key Uri
// Format and authenticator apps use it.
var secretEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// EncodeSecret is the base32 form of a secret (upper case, no padding).
func EncodeSecret(secret []byte) string { return secretEncoding.EncodeToString(secret) }

// DecodeSecret reads a base32 secret as people and apps write it: any
// case, spaces, dashes and '=' padding ignored.
func DecodeSecret(s string) ([]byte, error) {
	clean := strings.Map(func(r rune) rune {
		switch {
		case r == ' ' || r == '-' || r == '=':
			return -1
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		}
		return r
	}, s)
	b, err := secretEncoding.DecodeString(clean)
	if err != nil {
		return nil, fmt.Errorf("totp: secret is not base32 (RFC 4648, A-Z and 2-7): %w", err)
	}
	if len(b) < MinSecretLen {
		return nil, fmt.Errorf("totp: secret of %d bytes is shorter than the minimum %d", len(b), MinSecretLen)
	}
	return b, nil
}
