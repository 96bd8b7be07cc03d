package image

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
)

// debugShellDir is the Go module (relative to the source root) that pins
// u-root's shell and core commands and the gobusybox compiler.
const debugShellDir = "image/debugshell"

// debugBusybox is where debug images carry the busybox binary; every
// command is a symlink to it (gobusybox dispatches on argv[0]).
const debugBusybox = "/bin/bb"

// debugShellTags are the build tags of the debug busybox (see
// buildDebugShell).
const debugShellTags = "goshsmall"

// DebugCommands are the u-root core commands of debug images: gosh (the
// shell) and what field diagnostics on the serial console need. Each must
// be imported by image/debugshell/tools.go so its module sums are pinned.
var DebugCommands = []string{
	"cat", "cmp", "cp", "date", "df", "dmesg", "echo", "find", "free", "grep",
	"gosh", "head", "hexdump", "hostname", "ip", "kill", "ln", "ls", "lsmod",
	"mkdir", "more", "mount", "mv", "netstat", "ping", "poweroff", "ps", "pwd",
	"readlink", "rm", "shasum", "sleep", "strings", "sync", "tail", "tee",
	"touch", "umount", "uname", "uptime", "wc",
}

func debugCommandPackages() []string {
	var p []string
	for _, c := range DebugCommands {
		p = append(p, "github.com/u-root/u-root/cmds/core/"+c)
	}
	return p
}

// buildDebugShell compiles DebugCommands into one busybox binary at out,
// with gobusybox's makebb (itself built for the host first, in tmp).
// makebb builds with -trimpath and -ldflags "-s -w -buildid=", so the
// binary is reproducible like the others.
func buildDebugShell(ctx context.Context, src, tmp string, targetEnv []string, out string) error {
	dir := filepath.Join(src, debugShellDir)
	makebb := filepath.Join(tmp, "makebb")
	host, err := hostGoEnv()
	if err != nil {
		return fmt.Errorf("debug shell: %w", err)
	}
	if err := goBuild(ctx, dir, host, "github.com/u-root/gobusybox/src/cmd/makebb", makebb); err != nil {
		return fmt.Errorf("debug shell: build makebb: %w", err)
	}
	// makebb, built with -trimpath, cannot find GOROOT by itself.
	goroot, err := goOutput(ctx, dir, host, "env", "GOROOT")
	if err != nil {
		return fmt.Errorf("debug shell: %w", err)
	}
	env := append(append([]string(nil), targetEnv...), "GOROOT="+strings.TrimSpace(string(goroot)))
	// goshsmall: gosh's plain line reader ("$ " prompt) instead of its
	// full-screen line editor, which queries the terminal (colours, cursor)
	// and waits for answers a serial console, with init's log lines
	// between, does not give: it sat silent on the console.
	args := append([]string{"-o", out, "-go-build-tags=" + debugShellTags}, debugCommandPackages()...)
	if err := runIn(ctx, dir, env, makebb, args...); err != nil {
		return fmt.Errorf("debug shell: %w", err)
	}
	return nil
}
