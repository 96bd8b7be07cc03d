package totp

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// RFC 6238 Appendix B: the seeds are ASCII "1234567890" repeated to the
// hash's output size; 8 digits, 30 s.
func TestRFC6238AppendixB(t *testing.T) {
	seed := func(n int) []byte { return []byte(strings.Repeat("1234567890", 7)[:n]) }
	keys := map[Algorithm][]byte{SHA1: seed(20), SHA256: seed(32), SHA512: seed(64)}
	vectors := []struct {
		unix int64
		alg  Algorithm
		want string
	}{
		{59, SHA1, "94287082"}, {59, SHA256, "46119246"}, {59, SHA512, "90693936"},
		{1111111109, SHA1, "07081804"}, {1111111109, SHA256, "68084774"}, {1111111109, SHA512, "25091201"},
		{1111111111, SHA1, "14050471"}, {1111111111, SHA256, "67062674"}, {1111111111, SHA512, "99943326"},
		{1234567890, SHA1, "89005924"}, {1234567890, SHA256, "91819424"}, {1234567890, SHA512, "93441116"},
		{2000000000, SHA1, "69279037"}, {2000000000, SHA256, "90698825"}, {2000000000, SHA512, "38618901"},
		{20000000000, SHA1, "65353130"}, {20000000000, SHA256, "77737706"}, {20000000000, SHA512, "47863826"},
	}
	for _, v := range vectors {
		p := Params{Algorithm: v.alg, Digits: 8, Period: 30, Skew: 1}
		got, err := Code(keys[v.alg], time.Unix(v.unix, 0), p)
		if err != nil {
			t.Fatal(err)
		}
		if got != v.want {
			t.Errorf("%s at %d: got %s, want %s", v.alg, v.unix, got, v.want)
		}
		step, ok, err := Verify(keys[v.alg], v.want, time.Unix(v.unix, 0), p)
		if err != nil || !ok || step != uint64(v.unix/30) {
			t.Errorf("%s at %d: Verify(%s) = %d, %v, %v; want step %d", v.alg, v.unix, v.want, step, ok, err, v.unix/30)
		}
	}
}

// oathtool computes the codes independently.
func TestAgainstOathtool(t *testing.T) {
	bin, err := exec.LookPath("oathtool")
	if err != nil {
		t.Skip("oathtool not installed (apt-get install oathtool)")
	}
	secret, err := GenerateSecret(0)
	if err != nil {
		t.Fatal(err)
	}
	b32 := EncodeSecret(secret)
	cases := []struct {
		args []string
		p    Params
	}{
		{nil, DefaultParams},
		{[]string{"--totp=SHA256", "-d", "8"}, Params{Algorithm: SHA256, Digits: 8, Period: 30}},
		{[]string{"--totp=SHA512", "-s", "60s", "-d", "7"}, Params{Algorithm: SHA512, Digits: 7, Period: 60}},
	}
	times := []time.Time{
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 22, 3, 14, 59, 0, time.UTC),
		time.Date(2038, 1, 19, 3, 14, 8, 0, time.UTC), // past 2^31 seconds
	}
	for _, c := range cases {
		for _, at := range times {
			args := append([]string{"-b", "--now", at.Format("2006-01-02 15:04:05 UTC")}, c.args...)
			if len(c.args) == 0 {
				args = append(args, "--totp")
			}
			out, err := exec.Command(bin, append(args, b32)...).CombinedOutput()
			if err != nil {
				t.Fatalf("oathtool %v: %v: %s", args, err, out)
			}
			want := strings.TrimSpace(string(out))
			got, err := Code(secret, at, c.p)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("%+v at %v: got %s, oathtool %s", c.p, at, got, want)
			}
		}
	}
}

func TestVerifySkewAndStep(t *testing.T) {
	secret := []byte("12345678901234567890")
	p := DefaultParams
	now := time.Unix(1_800_000_015, 0)
	cur := p.Step(now)
	for _, d := range []int64{-2, -1, 0, 1, 2} {
		code, _ := CodeAt(secret, uint64(int64(cur)+d), p)
		step, ok, err := Verify(secret, code, now, p)
		if err != nil {
			t.Fatal(err)
		}
		wantOK := d >= -1 && d <= 1
		if ok != wantOK || (ok && step != uint64(int64(cur)+d)) {
			t.Errorf("offset %d: Verify = step %d ok %v; want ok %v step %d", d, step, ok, wantOK, int64(cur)+d)
		}
	}
	p0 := p
	p0.Skew = 0
	code, _ := CodeAt(secret, cur-1, p)
	if _, ok, _ := Verify(secret, code, now, p0); ok {
		t.Error("skew 0 accepted the previous step's code")
	}
	// People type spaces.
	code, _ = CodeAt(secret, cur, p)
	if _, ok, err := Verify(secret, code[:3]+" "+code[3:], now, p); !ok || err != nil {
		t.Errorf("code with a space: ok %v err %v", ok, err)
	}
}

func TestMalformedCodes(t *testing.T) {
	secret := []byte("12345678901234567890")
	for _, c := range []string{"", "12345", "1234567", "12345a", "１２３４５６", "123\x0056"} {
		_, ok, err := Verify(secret, c, time.Now(), DefaultParams)
		if ok || !errors.Is(err, ErrBadCode) {
			t.Errorf("Verify(%q) = ok %v err %v; want ErrBadCode", c, ok, err)
		}
	}
}

func TestParamsValidate(t *testing.T) {
	bad := []Params{
		{Algorithm: "MD5", Digits: 6, Period: 30},
		{Algorithm: SHA1, Digits: 5, Period: 30},
		{Algorithm: SHA1, Digits: 9, Period: 30},
		{Algorithm: SHA1, Digits: 6, Period: 0},
		{Algorithm: SHA1, Digits: 6, Period: 30, Skew: -1},
	}
	for _, p := range bad {
		if err := p.Validate(); err == nil {
			t.Errorf("%+v: no error", p)
		}
		if _, err := Code([]byte("12345678901234567890"), time.Now(), p); err == nil {
			t.Errorf("Code with %+v: no error", p)
		}
	}
}
