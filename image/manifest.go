package image

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Manifest describes one built image: what it is made of and the sha256 of
// every artifact. It holds no absolute paths and no timestamps, so it is
// reproducible like the artifacts.
type Manifest struct {
	Board string `json:"board"`
	// Variant is "production" only for an image built without debug,
	// test and demo: else it names what the image carries ("debug",
	// "test", "demo", joined with '+'), and so does the title of its
	// boot loader entry (UEFI boards).
	Variant string `json:"variant"`
	// ImageID is the sha256 over the inputs (also in boot.cbor).
	ImageID string `json:"image_id"`
	Debug   bool   `json:"debug"`
	Test    bool   `json:"test"`
	// Demo images carry the demo site and demo credentials (make run).
	Demo      bool       `json:"demo,omitempty"`
	Artifacts []Artifact `json:"artifacts"`
	Inputs    Inputs     `json:"inputs"`
}

// Artifact is one file in out/<board>/.
type Artifact struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Inputs are everything that went into the image.
type Inputs struct {
	Kernel      Package  `json:"kernel"`
	SystemdBoot *Package `json:"systemd_boot,omitempty"`
	GoVersion   string   `json:"go_version"`
	GOARCH      string   `json:"goarch"`
	// GoArchLevel is the GOAMD64/GOARM64 value.
	GoArchLevel string `json:"goarch_level"`
	// Modules are the Go modules compiled into the image's binaries.
	Modules []GoModule `json:"go_modules"`
	// BuilderModules are the Go modules of the image builder itself
	// (image/cmd/otgate-image): its cpio and zstd writers and go-diskfs
	// shape the artifacts' bytes as much as the image's own code does.
	BuilderModules []GoModule `json:"builder_go_modules"`
	// Builder is the program that ran the build as it reports itself:
	// the Go toolchain that compiled it and its module build info. The
	// image's binaries are compiled by the go command (GoVersion), the
	// builder by whatever ran it (go run, go test), which may differ.
	Builder Builder `json:"builder"`
	// QemuImg is the version of the qemu-img that wrote the qcow2 (UEFI
	// boards).
	QemuImg string `json:"qemu_img,omitempty"`
	// KernelModules are the shipped kernel modules in load order.
	KernelModules []string `json:"kernel_modules"`
	// BuiltinModules are board modules the kernel has built in.
	BuiltinModules []string `json:"builtin_modules,omitempty"`
	// Sources are the source tree files that went in, relative paths:
	// those of the image's binaries, rootfs/, and the builder's own
	// (image/, board/, what they import).
	Sources []SourceFile `json:"sources"`
}

// Package is a pinned Debian package.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
}

// GoModule is a dependency compiled into a binary.
type GoModule struct {
	Path    string `json:"path"`
	Version string `json:"version"`
	// Sum is the go.sum hash (h1:...) of the module.
	Sum string `json:"sum"`
	// Replaces is the module (path and version) go.mod replaces by this
	// one, if any.
	Replaces string `json:"replaces,omitempty"`
}

// Builder is the running image builder: runtime.Version() and what
// debug.ReadBuildInfo says of it, less the version control stamps (vcs.*:
// the builder's source files are in Inputs.Sources, and a stamp would set
// apart two builds of the same tree, one committed, one not).
type Builder struct {
	// GoVersion is the toolchain that compiled the builder.
	GoVersion string `json:"go_version"`
	// Path is the builder's main package (image/cmd/otgate-image, or a
	// test binary that calls Build).
	Path string `json:"path"`
	// Main is the builder's main module.
	Main GoModule `json:"main"`
	// Modules are the modules compiled into the builder, with their
	// go.sum hashes as the binary records them.
	Modules []GoModule `json:"go_modules"`
	// Settings are the build settings the binary records (-trimpath,
	// CGO_ENABLED, GOARCH, GOAMD64, DefaultGODEBUG...), in its order.
	Settings []BuildSetting `json:"settings"`
}

// BuildSetting is one key=value build setting of the builder.
type BuildSetting struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// SourceFile is one source tree file.
type SourceFile struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// ReadManifest reads out/<board>/manifest.json.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ManifestFile), err)
	}
	return &m, nil
}

func (m *Manifest) marshal() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// goSums reads the h1: hashes of a go.sum file, keyed "path version".
func goSums(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sums := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && !strings.HasSuffix(f[1], "/go.mod") {
			sums[f[0]+" "+f[1]] = f[2]
		}
	}
	return sums, sc.Err()
}

func sortModules(m []GoModule) []GoModule {
	sort.Slice(m, func(i, j int) bool {
		if m[i].Path != m[j].Path {
			return m[i].Path < m[j].Path
		}
		return m[i].Version < m[j].Version
	})
	out := m[:0]
	for i, x := range m {
		if i == 0 || x != m[i-1] {
			out = append(out, x)
		}
	}
	return out
}

// Production is the Variant of an image without debug shell, test
// services or demo credentials.
const Production = "production"

// variant is the Manifest.Variant of an image built with c.
func variant(c *config) string {
	var v []string
	if c.debug {
		v = append(v, "debug")
	}
	if c.test {
		v = append(v, "test")
	}
	if c.demo {
		v = append(v, "demo")
	}
	if len(v) == 0 {
		return Production
	}
	return strings.Join(v, "+")
}
