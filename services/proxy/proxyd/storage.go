package proxyd

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/audit"
	"github.com/otgate/otgate/audit/syslog"
)

// The audit log shares /perm with the gate's other state and grows with
// every session; the disk does not (audit.Retention). Unless told
// otherwise the log may use half of its file system, and new sessions are
// refused when less than 2% of it (at least 8 MiB, at most 512 MiB) is
// left free, which keeps room for the running sessions' records and for
// the identity, user store and policy writes that share the disk.
const (
	autoBudgetShare  = 2   // the log's budget: 1/autoBudgetShare of the file system
	autoReservePct   = 2   // the reserve: this % of the file system ...
	autoReserveMin   = 8   // ... at least (MiB)
	autoReserveMax   = 512 // ... at most (MiB)
	maxAuditFileSize = 64 << 20
	minAuditFileSize = 1 << 20
	storageCheck     = 30 * time.Second
)

// auditStorage is the audit log's retention as configured: the budget and
// reserve in bytes, the size of one log file, and a line saying so.
type auditStorage struct {
	retention audit.Retention
	fileSize  int64
	describe  string
}

// planAuditStorage works out the retention for the audit log in dir from
// -audit-max-mib and -audit-reserve-mib (0: automatic, from the size of
// dir's file system). With a syslog export (cursor not ""), only records
// the receiver acknowledged may be removed: evidence is never deleted
// before it is somewhere else.
func planAuditStorage(dir string, maxMiB, reserveMiB int64, cursor string) (auditStorage, error) {
	probe := dir
	for {
		if _, err := os.Stat(probe); err == nil {
			break
		}
		parent := filepath.Dir(probe)
		if parent == probe {
			break
		}
		probe = parent
	}
	var s unix.Statfs_t
	if err := unix.Statfs(probe, &s); err != nil {
		return auditStorage{}, fmt.Errorf("audit log storage: statfs %s: %w", probe, err)
	}
	const maxMiBFlag = math.MaxInt64 >> 20 // larger overflows in bytes
	if maxMiB > maxMiBFlag || reserveMiB > maxMiBFlag {
		return auditStorage{}, fmt.Errorf("audit log storage: a budget of %d MiB or a reserve of %d MiB is beyond any file system", maxMiB, reserveMiB)
	}
	var st auditStorage
	budget, reserve := maxMiB<<20, reserveMiB<<20
	how := fmt.Sprintf("budget %d MiB", maxMiB)
	if s.Blocks == 0 {
		// The file system reports no size and no free space (a tmpfs
		// mounted without a size limit, some network and FUSE file
		// systems): there is nothing to take half of, and a reserve
		// measured against the 0 bytes it says are free would refuse
		// every session.
		if reserveMiB != 0 {
			return auditStorage{}, fmt.Errorf("audit log storage: the file system of %s reports no size or free space: a reserve of %d MiB cannot be kept (give -audit-reserve-mib 0)", dir, reserveMiB)
		}
		reserve = 0
		if maxMiB == 0 {
			how = "no budget (the file system reports no size: give -audit-max-mib to bound the log)"
		}
		st.fileSize = maxAuditFileSize
		if budget > 0 {
			st.fileSize = min(max(budget/16, minAuditFileSize), maxAuditFileSize)
		}
		how += fmt.Sprintf(", files of %d MiB, no reserve (no free space reported)", st.fileSize>>20)
	} else {
		fsSize := int64(s.Blocks) * int64(s.Bsize)
		if maxMiB == 0 {
			budget = fsSize / autoBudgetShare
			how = fmt.Sprintf("budget %d MiB (half of the %d MiB file system)", budget>>20, fsSize>>20)
		}
		if reserveMiB == 0 {
			reserve = min(max(fsSize*autoReservePct/100, autoReserveMin<<20), autoReserveMax<<20)
		}
		if budget >= fsSize-reserve {
			return auditStorage{}, fmt.Errorf("audit log storage: a budget of %d MiB leaves less than the reserve of %d MiB free on the %d MiB file system of %s", budget>>20, reserve>>20, fsSize>>20, dir)
		}
		st.fileSize = min(max(budget/16, minAuditFileSize), maxAuditFileSize)
		how += fmt.Sprintf(", files of %d MiB, new sessions refused below %d MiB free", st.fileSize>>20, reserve>>20)
	}
	st.retention = audit.Retention{MaxBytes: budget, Reserve: reserve}
	if cursor != "" {
		st.retention.Removable = exportedThrough(cursor)
		how += "; the oldest files go only once exported to the syslog receiver"
	} else {
		how += "; the oldest files go once signed (no syslog export: keep a copy elsewhere)"
	}
	st.describe = how
	return st, nil
}

// exportedThrough reads the syslog exporter's cursor: the records up to
// the last one the receiver acknowledged may go. A cursor of another log
// (left from a log that was replaced, before the exporter resets it) says
// nothing about this one: nothing may go.
func exportedThrough(cursor string) func(logID string) (uint64, bool) {
	return func(logID string) (uint64, bool) {
		c, ok, err := syslog.LoadCursor(cursor)
		if err != nil || !ok || c.LogID != logID {
			return 0, false
		}
		return c.Seq, true
	}
}

// watchStorage keeps the proxy's status note about the audit log's disk
// while it lasts, and logs when it changes: the log over its budget and
// unable to shrink (why), or the disk below the reserve (new sessions are
// refused).
func watchStorage(ctx context.Context, w *audit.Writer, every time.Duration, logf func(string, ...any), note func(string) error) {
	watchNote(ctx, every, func() string {
		st, err := w.StorageState()
		switch {
		case err != nil:
			return "DEGRADED: audit log storage: " + err.Error()
		case st.Reserve > 0 && st.Free < st.Reserve:
			s := fmt.Sprintf("DEGRADED: audit log storage FULL: %d MiB free, below the %d MiB reserve: new sessions refused", st.Free>>20, st.Reserve>>20)
			if st.Held != "" {
				s += " (" + st.Held + ")"
			}
			return s
		case st.MaxBytes > 0 && st.Bytes > st.MaxBytes && st.Held != "":
			return fmt.Sprintf("DEGRADED: audit log over its budget (%d of %d MiB): %s", st.Bytes>>20, st.MaxBytes>>20, st.Held)
		}
		return ""
	}, "audit log storage: back within its budget and above the reserve", logf, note)
}

// watchNote keeps a status note: it computes it now and every every until
// ctx ends, and on each change logs it (cleared: "otgate-proxy: " +
// cleared) and sets it with note.
func watchNote(ctx context.Context, every time.Duration, compute func() string, cleared string, logf func(string, ...any), note func(string) error) {
	last := ""
	check := func() {
		s := compute()
		if s == last {
			return
		}
		if s == "" {
			logf("otgate-proxy: %s", cleared)
		} else {
			logf("otgate-proxy: %s", s)
		}
		note(s)
		last = s
	}
	check()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			check()
		}
	}
}
