package image

import (
	"bytes"
	"strings"
	"testing"

	"github.com/otgate/otgate/board"
)

// Both compressions write the same archive (zstd's frame, or the newc
// records themselves), and readInitramfs reads either back.
func TestInitramfsCompressions(t *testing.T) {
	tree := newFileTree()
	if err := tree.addData("/bin/otgate", 0o755, []byte("binary"), "test"); err != nil {
		t.Fatal(err)
	}
	if err := tree.add("/bin/otgate-proxy", &entry{kind: kindSymlink, perm: 0o777, data: []byte("otgate"), from: "test"}); err != nil {
		t.Fatal(err)
	}
	var names [2][]string
	for i, c := range []string{compressZstd, compressNone} {
		var buf bytes.Buffer
		if err := writeInitramfs(&buf, tree, c); err != nil {
			t.Fatal(err)
		}
		zstdFrame := bytes.HasPrefix(buf.Bytes(), zstdMagic)
		newc := bytes.HasPrefix(buf.Bytes(), []byte("070701"))
		if (c == compressZstd) != zstdFrame || (c == compressNone) != newc {
			t.Errorf("%s: archive starts %q", c, buf.Bytes()[:6])
		}
		recs, err := readInitramfs(buf.Bytes())
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		for _, r := range recs {
			names[i] = append(names[i], r.Name)
		}
	}
	if strings.Join(names[0], " ") != strings.Join(names[1], " ") || len(names[0]) == 0 {
		t.Errorf("zstd archive holds %v, uncompressed %v", names[0], names[1])
	}
}

// The VM boards boot uncompressed, the hardware board compressed; any
// other value is refused, naming the board.
func TestBoardCompression(t *testing.T) {
	for name, want := range map[string]string{"qemu-x86_64": compressNone, "qemu-aarch64": compressNone, "generic-x86_64": compressZstd} {
		b, err := board.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := compression(b); err != nil || got != want {
			t.Errorf("%s: compression %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := compression(&board.Board{Name: "odd", InitramfsCompression: "lz4"}); err == nil || !strings.Contains(err.Error(), `board odd: initramfs compression "lz4"`) {
		t.Errorf("compression(lz4) = %v", err)
	}
}
