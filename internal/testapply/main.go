// Command otgate-testapply is a test-image-only service: when the kernel
// command line carries the test hook otgate.test.apply_site=FILE (and the
// boot config enables test hooks), it runs `otgate site apply FILE` on the
// running gate, the way an operator would, and prints a marker line with
// the result. Without the hook it does nothing. It never runs in release
// images (image.TestPolicyServices is added only with test services).
package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/otgate/otgate/internal/bootcfg"
)

// HookApplySite names the site file to apply.
const HookApplySite = "otgate.test.apply_site"

func main() {
	cfg, err := bootcfg.Load(bootcfg.Path)
	if err != nil {
		fmt.Printf("testapply: %v; nothing applied\n", err)
		return
	}
	if !cfg.TestHooks {
		fmt.Println("testapply: test hooks are off in this image; nothing applied")
		return
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		fmt.Printf("testapply: %v; nothing applied\n", err)
		return
	}
	file := ""
	for _, f := range strings.Fields(string(cmdline)) {
		if k, v, ok := strings.Cut(f, "="); ok && k == HookApplySite {
			file = v
		}
	}
	if file == "" {
		fmt.Printf("testapply: no %s hook; nothing applied\n", HookApplySite)
		return
	}
	fmt.Printf("testapply: test hook: otgate site apply %s\n", file)
	cmd := exec.Command("/bin/otgate", "site", "apply", file)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	if err := cmd.Run(); err != nil {
		fmt.Printf("testapply: APPLY FAILED: %s: %v\n", file, err)
		return
	}
	fmt.Printf("testapply: APPLIED %s\n", file)
}
