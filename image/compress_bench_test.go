package image

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// BenchmarkInitramfsCompression compares compressors on a real
// (uncompressed) qemu-x86_64 initramfs: size and speed.
func BenchmarkInitramfsCompression(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join("..", "out", "qemu-x86_64", InitramfsFile))
	if err != nil {
		b.Skipf("build out/qemu-x86_64 first: %v", err)
	}
	zr, err := zstd.NewReader(bytes.NewReader(raw))
	if err != nil {
		b.Fatal(err)
	}
	defer zr.Close()
	var cpioBytes bytes.Buffer
	if _, err := cpioBytes.ReadFrom(zr); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		f    func(w *bytes.Buffer) error
	}{
		{"gzip-best", func(w *bytes.Buffer) error {
			z, _ := gzip.NewWriterLevel(w, gzip.BestCompression)
			z.Write(cpioBytes.Bytes())
			return z.Close()
		}},
		{"gzip-default", func(w *bytes.Buffer) error {
			z, _ := gzip.NewWriterLevel(w, gzip.DefaultCompression)
			z.Write(cpioBytes.Bytes())
			return z.Close()
		}},
		{"zstd-default", func(w *bytes.Buffer) error {
			z, _ := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1))
			z.Write(cpioBytes.Bytes())
			return z.Close()
		}},
		{"zstd-best", func(w *bytes.Buffer) error {
			z, _ := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedBestCompression))
			z.Write(cpioBytes.Bytes())
			return z.Close()
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var out bytes.Buffer
			for b.Loop() {
				out.Reset()
				if err := c.f(&out); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(out.Len())/(1<<20), "MiB")
			b.ReportMetric(float64(cpioBytes.Len())/float64(out.Len()), "ratio")
		})
	}
}
