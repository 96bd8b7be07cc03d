package identity

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/otgate/otgate/services/identity/api"
)

// A certificate installed while the service runs (install-cert from the
// CLI) is picked up by the next tls-cert, which replaces the identity's
// device record under its lock; status calls on other connections read
// the site and serial from that record at the same time. They must read
// it under the same lock: run with -race, the unguarded read was reported
// as a data race (a torn string read can serve a broken device URI).
func TestStatusWhileANewCertificateIsServed(t *testing.T) {
	_, opener := startTPM(t)
	cfg := testConfig(t, opener)
	id, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer id.Close()
	site, serial := id.Site(), id.Serial()
	want := DeviceURI(site, serial).String()
	sock := serve(t, id, -1, map[uint32]string{uint32(os.Getuid()): "proxy"})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := api.Dial(sock)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for {
				select {
				case <-stop:
					return
				default:
				}
				st, err := c.Status()
				if err != nil {
					errs <- err
					return
				}
				if st.DeviceURI != want {
					t.Errorf("status: device %q, want %q", st.DeviceURI, want)
					return
				}
			}
		}()
	}

	c, err := api.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 5; i++ {
		// What install-cert writes: a new certificate for the same key.
		der, err := selfSignedDeviceCert(id.Signer(), site, serial, false, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		rec := id.deviceRecord()
		rec.Cert = der
		if err := writeState(cfg.StateDir, DeviceFile, &rec); err != nil {
			t.Fatal(err)
		}
		cert, err := c.TLSCertificate()
		if err != nil {
			t.Fatal(err)
		}
		if string(cert.Certificate[0]) != string(der) {
			t.Fatalf("tls-cert %d: the newly written certificate is not served", i)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
