package sandbox

import "fmt"

// LockDown is the start of every service that runs as root: it keeps
// the capabilities in keep and drops the rest (LimitCapabilities), then
// keeps the process from signalling, tracing or reading the memory of
// any other and from making one (KeepToItself): uid 0 may otherwise
// signal every root process, and SIGTERM to init is a shutdown. The
// error says which step failed and that the service must not run on
// (the caller exits, or refuses to serve).
func LockDown(keep ...uintptr) error {
	if err := LimitCapabilities(keep...); err != nil {
		return fmt.Errorf("%w: refusing to run with root's other capabilities", err)
	}
	if err := KeepToItself(); err != nil {
		return fmt.Errorf("%w: refusing to run able to signal or trace other processes", err)
	}
	return nil
}
