package totp

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Key is what an authenticator app needs: who issued it, for which
// account, the secret and the parameters.
type Key struct {
	Issuer  string
	Account string
	Secret  []byte
	Params  Params
}

// String redacts the secret so a Key in a log line does not leak it.
func (k Key) String() string {
	return fmt.Sprintf("totp.Key{%s:%s, %s, %d digits, %ds, secret redacted}", k.Issuer, k.Account, k.Params.Algorithm, k.Params.Digits, k.Params.Period)
}

// URI is the Key Uri Format (otpauth://totp/Issuer:account?secret=...&
// issuer=...&algorithm=...&digits=...&period=...) that authenticator apps
// read from a QR code. Issuer and account must not contain ':'.
func (k Key) URI() (string, error) {
	if err := k.Params.Validate(); err != nil {
		return "", err
	}
	if k.Account == "" || strings.Contains(k.Account, ":") || strings.Contains(k.Issuer, ":") {
		return "", fmt.Errorf("totp: issuer %q and account %q: the account must be set and neither may contain ':'", k.Issuer, k.Account)
	}
	if len(k.Secret) < MinSecretLen {
		return "", fmt.Errorf("totp: secret of %d bytes is shorter than the minimum %d", len(k.Secret), MinSecretLen)
	}
	label := k.Account
	if k.Issuer != "" {
		label = k.Issuer + ":" + k.Account
	}
	q := []string{"secret=" + EncodeSecret(k.Secret)}
	if k.Issuer != "" {
		q = append(q, "issuer="+url.QueryEscape(k.Issuer))
	}
	q = append(q,
		"algorithm="+string(k.Params.Algorithm),
		"digits="+strconv.Itoa(k.Params.Digits),
		"period="+strconv.Itoa(k.Params.Period))
	u := url.URL{Scheme: "otpauth", Host: "totp", Path: "/" + label, RawQuery: strings.Join(q, "&")}
	return u.String(), nil
}

// ParseURI reads an otpauth://totp URI. Missing algorithm, digits and
// period take the Key Uri Format defaults (SHA1, 6, 30); Skew is
// DefaultParams.Skew.
func ParseURI(s string) (Key, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Key{}, fmt.Errorf("totp: URI %q: %w", s, err)
	}
	if u.Scheme != "otpauth" || u.Host != "totp" {
		return Key{}, fmt.Errorf("totp: URI %q: want scheme otpauth and type totp", s)
	}
	label := strings.TrimPrefix(u.Path, "/")
	k := Key{Params: DefaultParams}
	if i := strings.Index(label, ":"); i >= 0 {
		k.Issuer, k.Account = label[:i], strings.TrimLeft(label[i+1:], " ")
	} else {
		k.Account = label
	}
	q := u.Query()
	if iss := q.Get("issuer"); iss != "" {
		if k.Issuer != "" && k.Issuer != iss {
			return Key{}, fmt.Errorf("totp: URI %q: label issuer %q differs from issuer parameter %q", s, k.Issuer, iss)
		}
		k.Issuer = iss
	}
	if k.Secret, err = DecodeSecret(q.Get("secret")); err != nil {
		return Key{}, fmt.Errorf("totp: URI %q: %w", s, err)
	}
	if a := q.Get("algorithm"); a != "" {
		k.Params.Algorithm = Algorithm(strings.ToUpper(a))
	}
	for name, dst := range map[string]*int{"digits": &k.Params.Digits, "period": &k.Params.Period} {
		if v := q.Get(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return Key{}, fmt.Errorf("totp: URI %q: %s=%q is not a number", s, name, v)
			}
			*dst = n
		}
	}
	if err := k.Params.Validate(); err != nil {
		return Key{}, fmt.Errorf("totp: URI %q: %w", s, err)
	}
	return k, nil
}
