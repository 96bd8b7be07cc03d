package identity

import (
	"fmt"
	"sync"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// DefaultTPMDevice is the resource-managed TPM device on the appliance.
const DefaultTPMDevice = "/dev/tpmrm0"

// TPMOpener opens a connection to a TPM.
type TPMOpener struct {
	// Name says what is opened, for logs and errors.
	Name string
	open func() (transport.TPMCloser, error)
}

// Open opens the TPM. The result serialises commands, so it can be shared
// by goroutines.
func (o TPMOpener) Open() (transport.TPMCloser, error) {
	if o.open == nil {
		return nil, fmt.Errorf("identity: no TPM configured")
	}
	t, err := o.open()
	if err != nil {
		return nil, fmt.Errorf("identity: open TPM %s: %w", o.Name, err)
	}
	return &lockedTPM{t: t}, nil
}

// DeviceTPM opens a TPM character device, normally /dev/tpmrm0 (the kernel
// resource manager lets several processes share the TPM and flushes what a
// crashed process left loaded).
func DeviceTPM(path string) TPMOpener {
	return TPMOpener{Name: path, open: func() (transport.TPMCloser, error) { return linuxtpm.Open(path) }}
}

// SocketTPM opens an swtpm "--server type=unixio" socket, for development
// hosts and tests, over one persistent connection (see swtpmConn). swtpm
// has no resource manager: this package flushes every transient object it
// loads. swtpm serves one connection at a time, so two processes cannot use
// it at once (the appliance's /dev/tpmrm0 has no such limit).
func SocketTPM(path string) TPMOpener {
	return TPMOpener{Name: "swtpm:" + path, open: func() (transport.TPMCloser, error) { return openSWTPM(path) }}
}

// lockedTPM serialises commands: the transports are not safe for concurrent
// use and a command/response pair must not interleave with another.
type lockedTPM struct {
	mu sync.Mutex
	t  transport.TPMCloser
}

func (l *lockedTPM) Send(cmd []byte) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.t.Send(cmd)
}

func (l *lockedTPM) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.t.Close()
}
