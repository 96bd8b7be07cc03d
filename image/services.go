package image

import (
	"time"

	"github.com/otgate/otgate/internal/bootcfg"
)

// ServiceRow is one row of an image's service table: what init runs
// (Service, whose Binary is the absolute path in the image) and the Go
// main package built into that binary, relative to the source root.
// Several rows may share one binary (and so one package).
type ServiceRow struct {
	Service bootcfg.Service
	Package string
}

// readinessTimeout is how long init waits for a service to report ready.
const readinessTimeout = 30 * time.Second

// ProductionServices is the service table of every image. A row is added
// when its service's main package lands in services/<name>/cmd (binary
// /bin/otgate-<name>).
var ProductionServices = []ServiceRow{
	// identity: TPM device key, sealed data key, local API socket. Not
	// critical yet: images booted without a TPM (plain QEMU runs) must
	// still reach ready; make it critical once every boot has a TPM.
	{Package: "./services/identity/cmd", Service: bootcfg.Service{
		Name: "identity", Binary: "/bin/otgate-identity", Readiness: bootcfg.ReadyNotify,
		Timeout: readinessTimeout,
	}},
}

// testsvcBinary is the test service's binary in test images.
const testsvcBinary = "/bin/otgate-testsvc"

// TestServices is added by WithTestServices: the test service
// (internal/testsvc) in its four modes, for init's integration tests.
var TestServices = []ServiceRow{
	testRow("steady", true, bootcfg.ReadyNotify, nil, "-mode=steady"),
	testRow("flaky", false, bootcfg.ReadyNotify, nil, "-mode=flaky", "-crashes=2", "-state=/run/otgate/testsvc-flaky"),
	testRow("crashloop", false, bootcfg.ReadyNotify, nil, "-mode=crash"),
	statusdumpRow(),
}

// statusdumpRow prints the status table 20 s after it starts, when the
// crash loop has been given up on and flaky has recovered.
func statusdumpRow() ServiceRow {
	r := testRow("statusdump", false, bootcfg.ReadyExit, []string{"steady"}, "-mode=status", "-after=20s")
	r.Service.Timeout = 2 * time.Minute
	return r
}

func testRow(name string, critical bool, readiness string, deps []string, args ...string) ServiceRow {
	return ServiceRow{
		Package: "./internal/testsvc",
		Service: bootcfg.Service{
			Name: name, Binary: testsvcBinary, Args: args, DependsOn: deps,
			Critical: critical, Readiness: readiness, Timeout: readinessTimeout,
		},
	}
}
