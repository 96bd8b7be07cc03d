package audit

import "time"

// Option configures a Writer.
type Option func(*config)

type config struct {
	logID              string
	checkpointEvery    uint64
	checkpointInterval time.Duration
	flushInterval      time.Duration
	maxFileSize        int64
	now                func() time.Time
	onError            func(error)
	anchor             Anchor
	anchorEvery        time.Duration
	retention          Retention
	// dev and devReason: WithDevMode.
	dev       bool
	devReason string
}

func defaultConfig() config {
	return config{
		checkpointEvery:    1000,
		checkpointInterval: 10 * time.Second,
		flushInterval:      time.Second,
		maxFileSize:        64 << 20,
		now:                time.Now,
		onError:            func(error) {},
	}
}

// WithLogID sets the id of a new log; for an existing log it must match.
// Without it a new log gets a random id.
func WithLogID(id string) Option { return func(c *config) { c.logID = id } }

// WithCheckpointEvery makes a checkpoint after n records (default 1000).
func WithCheckpointEvery(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.checkpointEvery = uint64(n)
		}
	}
}

// WithCheckpointInterval makes a checkpoint every d while there are
// unsigned records (default 10 s).
func WithCheckpointInterval(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.checkpointInterval = d
		}
	}
}

// WithFlushInterval bounds how long a buffered record may stay not yet
// fsynced (default 1 s).
func WithFlushInterval(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.flushInterval = d
		}
	}
}

// WithMaxFileSize rotates to a new file once the current one reaches n
// bytes (default 64 MiB).
func WithMaxFileSize(n int64) Option {
	return func(c *config) {
		if n > 0 {
			c.maxFileSize = n
		}
	}
}

// WithClock sets the clock that stamps records (tests).
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithErrorHandler receives errors of background work (periodic
// checkpoints and flushes). Those errors also make later appends fail when
// they concern the file; a failed signature does not (the records stay
// chained and durable, and Verify reports them as an unsigned tail).
func WithErrorHandler(f func(error)) Option { return func(c *config) { c.onError = f } }

// WithDevMode marks every record the Writer appends, checkpoints and
// rotation records included, as written in dev mode (Record.Dev): the gate
// has no TPM and the signer is a software key. reason says why (shown by
// Writer.DevMode; the proxy passes what the identity service reports).
// Verify counts the marked records (Report.DevRecords) and
// `otgate audit verify` reports them, failing under --strict. A log
// opened with and without the option at different times holds both kinds
// and is reported as mixed.
func WithDevMode(reason string) Option {
	return func(c *config) {
		c.dev = true
		c.devReason = reason
		if c.devReason == "" {
			c.devReason = "software key, no TPM"
		}
	}
}
