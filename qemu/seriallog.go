package qemu

import (
	"fmt"
	"os"
	"sync"
)

// DefaultSerialLogLimit is the size at which the serial log file is
// rotated (see WithSerialLogLimit).
const DefaultSerialLogLimit = 64 << 20

// serialLog is the serial console's log file. When a write would take it
// past limit bytes, the file is renamed to path.1 (replacing an older one)
// and a new one started, so a long `make run` session keeps at most about
// twice the limit on disk, the newest output always in path.
type serialLog struct {
	mu    sync.Mutex
	path  string
	limit int64
	f     *os.File
	size  int64
	err   error // the first rotation error; writes go on to the old file
}

func createSerialLog(path string, limit int64) (*serialLog, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("qemu: serial log: %w", err)
	}
	// A path.1 of an earlier run is not this run's: drop it.
	if err := os.Remove(path + ".1"); err != nil && !os.IsNotExist(err) {
		f.Close()
		return nil, fmt.Errorf("qemu: serial log: remove the earlier run's %s.1: %w", path, err)
	}
	return &serialLog{path: path, limit: limit, f: f}, nil
}

func (l *serialLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.limit > 0 && l.size > 0 && l.size+int64(len(p)) > l.limit && l.err == nil {
		l.rotate()
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	return n, err
}

// rotate moves the log to path.1 and starts a new one; l.mu is held.
func (l *serialLog) rotate() {
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		l.err = fmt.Errorf("qemu: serial log: rotate %s: %w", l.path, err)
		return
	}
	f, err := os.Create(l.path)
	if err != nil {
		// Keep writing to the renamed file: output is not lost.
		l.err = fmt.Errorf("qemu: serial log: rotate %s: %w", l.path, err)
		return
	}
	l.f.Close()
	l.f, l.size = f, 0
}

// Close closes the file and reports a rotation that failed.
func (l *serialLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.f.Close()
	if l.err != nil {
		return l.err
	}
	return err
}
