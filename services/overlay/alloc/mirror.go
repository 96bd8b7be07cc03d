package alloc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
)

// The state is kept in two copies: the state file and its mirror beside
// it (MirrorPath), each written atomically, the state file first. An
// Apply succeeds only once both hold the new table, so each of them
// alone holds every acknowledged allocation: a state file lost or
// damaged on its own (a flipped bit on the flash, a file removed, a
// filesystem repair that dropped it) is restored from the mirror at the
// next Open, instead of the allocator refusing to start (damaged) or,
// worse, allocating afresh with new endpoints for every asset (missing).
//
// When the two differ and the state file is sound, the state file wins:
// it is written first, so a power cut between the two writes leaves the
// newer table there, and the mirror is brought up to date at Open.

// MirrorPath is where the allocator keeps the second copy of the state
// file at path. To start allocation over, remove both.
func MirrorPath(path string) string { return path + ".mirror" }

// stateCopy is one copy of the state as read from disk.
type stateCopy struct {
	path string
	b    []byte
	t    *table
	err  error // nil: read and decoded
}

func readCopy(path string) stateCopy {
	b, err := os.ReadFile(path)
	if err != nil {
		return stateCopy{path: path, err: err}
	}
	t, err := decodeTable(b)
	if err != nil {
		return stateCopy{path: path, b: b, err: fmt.Errorf("%s: %w", path, err)}
	}
	return stateCopy{path: path, b: b, t: t}
}

func (c stateCopy) missing() bool { return errors.Is(c.err, os.ErrNotExist) }

// loaded is the outcome of reading the state and its mirror.
type loaded struct {
	use stateCopy // the copy to run from (t nil: nothing persisted yet)
	// rewrite is the path to write use.b to ("" none): the copy that is
	// missing, damaged or out of date.
	rewrite string
	note    string // what was found and is being done about it
}

// loadState reads the state file at path and its mirror and picks the
// copy to use. Both missing: nothing persisted yet (an empty table).
// Neither sound while one exists: an error (ErrCorruptState when a copy
// is damaged), never an empty table, which would renumber every asset.
func loadState(path string) (loaded, error) {
	p := readCopy(path)
	m := readCopy(MirrorPath(path))
	switch {
	case p.err == nil:
		l := loaded{use: p}
		switch {
		case m.missing():
			l.rewrite, l.note = m.path, fmt.Sprintf("the state's mirror %s is missing; writing it from %s", m.path, p.path)
		case m.err != nil:
			l.rewrite, l.note = m.path, fmt.Sprintf("the state's mirror is damaged (%v); rewriting it from %s", m.err, p.path)
		case !bytes.Equal(m.b, p.b):
			l.rewrite, l.note = m.path, fmt.Sprintf("the state's mirror %s holds an older table (a write cut short); rewriting it from %s", m.path, p.path)
		}
		return l, nil
	case p.missing() && m.missing():
		return loaded{use: stateCopy{path: path, t: &table{}}}, nil
	case m.err == nil:
		what := fmt.Sprintf("the state file %s is missing", p.path)
		if !p.missing() {
			what = fmt.Sprintf("the state file cannot be used (%v)", p.err) // the error names it
		}
		return loaded{use: m, rewrite: p.path, note: fmt.Sprintf("%s; restoring it from its mirror %s (%d assets, %d quarantined addresses)",
			what, m.path, len(m.t.entries), len(m.t.held))}, nil
	case p.missing():
		return loaded{}, fmt.Errorf("%s is missing and its mirror cannot be used: %w; refusing to allocate afresh (every asset would get a new endpoint)", p.path, m.err)
	case m.missing():
		return loaded{}, fmt.Errorf("%w (and there is no mirror %s to restore it from)", p.err, m.path)
	default:
		return loaded{}, fmt.Errorf("%w; its mirror: %v", p.err, m.err)
	}
}
