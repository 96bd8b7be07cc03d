// Package qrterm draws a QR code in a terminal with UTF-8 half blocks
// (U+2580, U+2584, U+2588): two module rows per text line, so an
// otpauth:// URI fits an 80-column terminal. The encoder is rsc.io/qr.
//
// By default blocks are drawn for the LIGHT modules and spaces are the
// dark ones, which is right on the usual dark-background terminal (the
// same as `qrencode -t UTF8`). On a light-background terminal pass
// Invert.
package qrterm

import (
	"fmt"
	"strings"

	"rsc.io/qr"
)

// QuietZone is the light border in modules, as the QR specification
// requires.
const QuietZone = 4

// Matrix is the QR code of text, with the quiet zone: true is a dark
// module. Level M (15% recovery) keeps the code small.
func Matrix(text string) ([][]bool, error) {
	c, err := qr.Encode(text, qr.M)
	if err != nil {
		return nil, fmt.Errorf("qrterm: encode %d bytes: %w", len(text), err)
	}
	n := c.Size + 2*QuietZone
	m := make([][]bool, n)
	for y := range m {
		m[y] = make([]bool, n)
		for x := range m[y] {
			cx, cy := x-QuietZone, y-QuietZone
			m[y][x] = cx >= 0 && cy >= 0 && cx < c.Size && cy < c.Size && c.Black(cx, cy)
		}
	}
	return m, nil
}

// Render draws text as a QR code, one string of lines ending in '\n'.
func Render(text string, invert bool) (string, error) {
	m, err := Matrix(text)
	if err != nil {
		return "", err
	}
	return draw(m, invert), nil
}

// draw turns the matrix into half-block lines.
func draw(m [][]bool, invert bool) string {
	// inked reports whether the terminal draws ink for a module.
	inked := func(y, x int) bool {
		dark := y < len(m) && m[y][x] // the padding row below an odd count is light
		return dark == invert
	}
	var b strings.Builder
	for y := 0; y < len(m); y += 2 {
		for x := range m[y] {
			top, bottom := inked(y, x), inked(y+1, x)
			switch {
			case top && bottom:
				b.WriteRune('█')
			case top:
				b.WriteRune('▀')
			case bottom:
				b.WriteRune('▄')
			default:
				b.WriteByte(' ')
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// Parse reads a drawing made by Render back into its matrix (rows are
// rounded up to an even count with a light row), for tests and tools.
func Parse(s string, invert bool) ([][]bool, error) {
	var m [][]bool
	for i, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		rs := []rune(line)
		if len(m) > 0 && len(rs) != len(m[0]) {
			return nil, fmt.Errorf("qrterm: line %d has %d columns, want %d", i+1, len(rs), len(m[0]))
		}
		top, bottom := make([]bool, len(rs)), make([]bool, len(rs))
		for x, r := range rs {
			var t, bo bool
			switch r {
			case '█':
				t, bo = true, true
			case '▀':
				t = true
			case '▄':
				bo = true
			case ' ':
			default:
				return nil, fmt.Errorf("qrterm: line %d column %d: unexpected %q", i+1, x+1, r)
			}
			// ink is dark exactly when inverted
			top[x], bottom[x] = t == invert, bo == invert
		}
		m = append(m, top, bottom)
	}
	return m, nil
}
