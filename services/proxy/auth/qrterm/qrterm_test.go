package qrterm

import (
	"image"
	"image/color"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
)

const uri = "otpauth://totp/otgate:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=otgate&algorithm=SHA1&digits=6&period=30"

// decode scans a module matrix with an independent QR decoder (gozxing,
// a port of ZXing), drawn as an image at 4 pixels a module.
func decode(t *testing.T, m [][]bool) string {
	t.Helper()
	const px = 4
	img := image.NewGray(image.Rect(0, 0, len(m[0])*px, len(m)*px))
	for y := range img.Bounds().Dy() {
		for x := range img.Bounds().Dx() {
			c := color.Gray{Y: 255}
			if m[y/px][x/px] {
				c.Y = 0
			}
			img.SetGray(x, y, c)
		}
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, nil)
	if err != nil {
		t.Fatalf("QR decoder: %v", err)
	}
	return res.GetText()
}

func TestRenderedCodeDecodesToTheURI(t *testing.T) {
	for _, invert := range []bool{false, true} {
		s, err := Render(uri, invert)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
		if w := utf8.RuneCountInString(lines[0]); w > 80 {
			t.Errorf("invert=%v: %d columns, more than a terminal's 80", invert, w)
		}
		m, err := Parse(s, invert)
		if err != nil {
			t.Fatal(err)
		}
		if got := decode(t, m); got != uri {
			t.Errorf("invert=%v: decoded %q, want %q", invert, got, uri)
		}
		// The drawing is exactly the library's matrix (plus a light pad row).
		want, _ := Matrix(uri)
		for y := range want {
			for x := range want[y] {
				if m[y][x] != want[y][x] {
					t.Fatalf("invert=%v: module (%d,%d) differs from the encoder's", invert, x, y)
				}
			}
		}
		for x := range m[len(m)-1] {
			if len(m) > len(want) && m[len(m)-1][x] {
				t.Fatal("padding row is not light")
			}
		}
	}
}

func TestParseRejectsOtherText(t *testing.T) {
	if _, err := Parse("█x█\n", false); err == nil {
		t.Error("Parse accepted an 'x'")
	}
	if _, err := Parse("██\n█\n", false); err == nil {
		t.Error("Parse accepted ragged lines")
	}
}
