package image

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/otgate/otgate/board"
)

// goEnv is the environment of every go command the builder runs for the
// target: no cgo, the board's GOOS/GOARCH and pinned architecture level,
// and a read-only go.mod. Variables that would change the output are
// dropped from the caller's environment.
func goEnv(b *board.Board) ([]string, error) {
	env := hostGoEnv()
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

// hostGoEnv is the environment for go commands that run on the build host.
func hostGoEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "GOFLAGS", "GOOS", "GOARCH", "GOAMD64", "GOARM64", "GOARM", "CGO_ENABLED",
			"GOEXPERIMENT", "GOWORK", "GO111MODULE", "GOTOOLCHAIN", "SOURCE_DATE_EPOCH":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "CGO_ENABLED=0", "GOFLAGS=-mod=readonly", "GOWORK=off", "GOTOOLCHAIN=local")
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
