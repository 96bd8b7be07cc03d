package image

import (
	_ "embed" // the test-only second site file
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
)

// A second site policy in test images, for applying a policy change on a
// running gate (integration/policy): TestSiteFile, applied by the
// "testapply" row when the kernel command line names it with the test
// hook otgate.test.apply_site.
const (
	TestSiteFile   = "/etc/otgate/test/site-2.yaml"
	testSiteSource = "image/testpolicy/site-2.yaml"
)

//go:embed testpolicy/site-2.yaml
var testSiteYAML []byte

// TestPolicyServices are added with the test services: "testapply"
// (internal/testapply) runs `otgate site apply` on the hook's file once
// the proxy is up, or does nothing without the hook.
var TestPolicyServices = []ServiceRow{
	{Package: "./internal/testapply", Service: bootcfg.Service{
		Name: "testapply", Binary: "/bin/otgate-testapply", Readiness: bootcfg.ReadyExit,
		Timeout: 2 * time.Minute, DependsOn: []string{"proxy"},
	}},
}

// addTestPolicy puts the second site file into a test image's tree.
func addTestPolicy(tree *fileTree) error {
	return tree.addData(TestSiteFile, 0o644, testSiteYAML, "test ("+testSiteSource+")")
}
