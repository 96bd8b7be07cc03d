package audit

import (
	"errors"
	"testing"
)

// A newest file with no complete rotation record (just the magic, or the
// magic and zeros) is damage: createDurable never makes a file visible
// without its rotation record. Open refused such a log but Verify passed
// it ("0 records", OK): an attacker could replace the log with the magic.
func TestVerifyNewestFileWithoutRecords(t *testing.T) {
	key := newKey(t)
	src := t.TempDir()
	w := openLog(t, src, key, WithMaxFileSize(600))
	for _, id := range []string{"a", "b", "c"} {
		writeSession(t, w, id, 2)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	es := entries(t, src)
	newest := es[len(es)-1].File
	idx, _ := parseFileName(newest)
	if idx == 0 {
		t.Fatal("want several files")
	}
	for _, tc := range []struct {
		name    string
		content []byte
	}{
		{"magic only", []byte(fileMagic)},
		{"magic and zeros", append([]byte(fileMagic), make([]byte, 4096)...)},
		{"rotation record cut", mustRead(t, fileOf(t, src, idx))[:len(fileMagic)+20]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, only := range []bool{false, true} {
				dir := t.TempDir()
				if only {
					mustWrite(t, fileOf(t, dir, 0), tc.content)
				} else {
					dir = copyDir(t, src)
					mustWrite(t, fileOf(t, dir, idx), tc.content)
				}
				want := FileName(idx)
				if only {
					want = FileName(0)
				}
				_, err := Verify(dir, Trust{ChainOnly: true})
				p := wantProblem(t, err, ErrTruncated, want, -1)
				if p.Offset != int64(len(fileMagic)) {
					t.Fatalf("problem at offset %d, want %d: %v", p.Offset, len(fileMagic), p)
				}
				if _, err := Open(dir, key); !errors.Is(err, ErrTruncated) {
					t.Fatalf("Open = %v, want ErrTruncated", err)
				}
				t.Logf("only file %v: %v", only, err)
			}
		})
	}
}
