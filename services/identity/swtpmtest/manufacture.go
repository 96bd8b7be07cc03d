package swtpmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// StartManufactured runs swtpm_setup on a fresh state directory to create
// EKs and EK certificates in NV (RSA 2048 at 0x01c00002, ECC at 0x01c00016),
// signed by a throw-away local CA kept in the test's temporary directory
// (not /var/lib/swtpm-localca), then starts swtpm on it.
func StartManufactured(tb testing.TB) *TPM {
	tb.Helper()
	setup, err := exec.LookPath("swtpm_setup")
	if err != nil {
		tb.Skip("swtpm_setup not installed (apt-get install swtpm-tools): skipping")
	}
	localca, err := exec.LookPath("swtpm_localca")
	if err != nil {
		tb.Skip("swtpm_localca not installed (apt-get install swtpm-tools): skipping")
	}
	dir := tb.TempDir()
	state := filepath.Join(dir, "state")
	ca := filepath.Join(dir, "ca")
	for _, d := range []string{state, ca} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			tb.Fatal(err)
		}
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			tb.Fatal(err)
		}
		return p
	}
	caConf := write("localca.conf", "statedir = "+ca+"\nsigningkey = "+ca+"/signkey.pem\nissuercert = "+ca+"/issuercert.pem\ncertserial = "+ca+"/certserial\n")
	caOpts := write("localca.options", "--platform-manufacturer otgate-test\n--platform-version 2.1\n--platform-model swtpm\n")
	setupConf := write("setup.conf", "create_certs_tool = "+localca+"\ncreate_certs_tool_config = "+caConf+"\ncreate_certs_tool_options = "+caOpts+"\nactive_pcr_banks = sha256\n")
	out, err := exec.Command(setup, "--tpm2", "--tpmstate", state, "--config", setupConf,
		"--create-ek-cert", "--overwrite").CombinedOutput()
	if err != nil {
		tb.Fatalf("swtpm_setup: %v\n%s", err, out)
	}
	return Start(tb, state)
}
