package image

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/otgate/otgate/board"
)

// goEnv is the environment of every go command the builder runs for the
// target: no cgo, the board's GOOS/GOARCH and pinned architecture level,
// and a read-only go.mod. Variables that would change the output are
// dropped from the caller's environment and from the go env file (see
// hostGoEnv).
func goEnv(b *board.Board) ([]string, error) {
	env, err := hostGoEnv()
	if err != nil {
		return nil, err
	}
	switch b.Arch {
	case "amd64":
		env = append(env, "GOAMD64="+b.GoArchLevel)
	case "arm64":
		env = append(env, "GOARM64="+b.GoArchLevel)
	default:
		return nil, fmt.Errorf("board %s: unsupported architecture %q (want amd64 or arm64)", b.Name, b.Arch)
	}
	if b.GoArchLevel == "" {
		return nil, fmt.Errorf("board %s: no GoArchLevel: pin GOAMD64/GOARM64 for reproducible binaries", b.Name)
	}
	return append(env, "GOOS=linux", "GOARCH="+b.Arch), nil
}

// goEnvKept are the settings the builder keeps from the go command's own
// configuration (the go env file and $GOROOT/go.env): where modules come
// from and where they and the build cache are kept. None changes a
// binary's bytes (go.sum pins every module).
var goEnvKept = []string{
	"GOPROXY", "GONOPROXY", "GOPRIVATE", "GOSUMDB", "GONOSUMDB", "GOINSECURE", "GOVCS", "GOAUTH",
	"GOPATH", "GOMODCACHE", "GOCACHE",
}

// hostGoEnv is the environment for go commands that run on the build host.
//
// GOCACHEPROG is dropped: a cache program answers for the build cache and
// can hand the go command any bytes as a compiled package or a linked
// binary, and a repro-check would not notice when both of its builds ask
// the same program. The image's binaries are built with the go command's
// own cache (GOCACHE) only; build says so in its log when the caller had
// set GOCACHEPROG, and refuses a GOCACHE that another user may write or
// replace (checkGoCache).
//
// The go env file (go env -w, or the file GOENV names) can set
// GOEXPERIMENT or GOFIPS140, which change every binary, and an empty
// environment variable does not override the file: the go commands of a
// build run with GOENV=off and get the goEnvKept settings, resolved here
// by the caller's go command, as variables.
func hostGoEnv() ([]string, error) {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "GOFLAGS", "GOOS", "GOARCH", "GOAMD64", "GOARM64", "GOARM", "CGO_ENABLED",
			"GOEXPERIMENT", "GOFIPS140", "GOWORK", "GO111MODULE", "GOTOOLCHAIN", "SOURCE_DATE_EPOCH",
			"GOCACHEPROG":
			continue
		}
		env = append(env, kv)
	}
	cmd := exec.Command("go", append([]string{"env", "-json"}, goEnvKept...)...)
	cmd.Env = append(slices.Clip(env), "GOTOOLCHAIN=local", "GOFLAGS=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go env: %w\n%s", err, strings.TrimSpace(stderr.String()))
	}
	kept := map[string]string{}
	if err := json.Unmarshal(out, &kept); err != nil {
		return nil, fmt.Errorf("go env -json: %w", err)
	}
	env = slices.DeleteFunc(env, func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return k == "GOENV" || slices.Contains(goEnvKept, k)
	})
	for _, k := range goEnvKept {
		if v := kept[k]; v != "" {
			env = append(env, k+"="+v)
		}
	}
	return append(env, "GOENV=off", "CGO_ENABLED=0", "GOFLAGS=-mod=readonly", "GOWORK=off", "GOTOOLCHAIN=local"), nil
}

// reproducibleBuildFlags are the go build flags of every binary in an image.
var reproducibleBuildFlags = []string{"-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid="}

// goBuild compiles the main package pkg (relative to dir) to out.
func goBuild(ctx context.Context, dir string, env []string, pkg, out string) error {
	args := append([]string{"build"}, reproducibleBuildFlags...)
	args = append(args, "-o", out, pkg)
	return runGo(ctx, dir, env, args...)
}

// runGo runs the go command in dir; its error carries the command's output.
func runGo(ctx context.Context, dir string, env []string, args ...string) error {
	_, err := goOutput(ctx, dir, env, args...)
	return err
}

func goOutput(ctx context.Context, dir string, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go %s (in %s): %w\n%s", strings.Join(args, " "), dir, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
