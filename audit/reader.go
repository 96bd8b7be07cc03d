package audit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Entry is one record as read from disk.
type Entry struct {
	File   string // base name of the file
	Offset int64  // offset of the frame in the file
	Size   int64  // frame size in bytes
	Record Record
	Body   Body
	Hash   Hash
}

// Reader reads the records of every file of a log directory in order. It
// checks framing, CRC and encoding (not the chain: see Verify).
type Reader struct {
	dir   string
	files []logFile
	i     int
	f     *os.File
	sc    *frameScanner
	torn  *TornTail
}

// NewReader opens dir for reading.
func NewReader(dir string) (*Reader, error) {
	files, err := listFiles(dir)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: no %s*%s files in %s", ErrFiles, filePrefix, fileSuffix, dir)
	}
	return &Reader{dir: dir, files: files, i: -1}, nil
}

// Torn returns the torn tail of the newest file once Next has reached it.
func (r *Reader) Torn() *TornTail { return r.torn }

// FileIndex returns the index of the file the last Entry came from.
func (r *Reader) fileIndex() uint64 { return r.files[r.i].index }

// Next returns the next record, io.EOF after the last one, or a *Problem.
// A torn tail is only accepted at the end of the newest file (see Torn);
// in an older file it is reported as ErrTruncated.
func (r *Reader) Next() (Entry, error) {
	for {
		if r.sc == nil {
			if r.i+1 >= len(r.files) {
				return Entry{}, io.EOF
			}
			r.i++
			if err := r.open(); err != nil {
				return Entry{}, err
			}
		}
		payload, off, err := r.sc.next()
		if err == io.EOF {
			r.closeFile()
			continue
		}
		var torn *errTorn
		if errors.As(err, &torn) {
			r.closeFile()
			if r.i == len(r.files)-1 {
				r.torn = &torn.tail
				return Entry{}, io.EOF
			}
			return Entry{}, &Problem{File: torn.tail.File, Offset: torn.tail.Offset,
				Err: fmt.Errorf("%w: %s in a file that is not the newest (only the newest file may end in a torn record)", ErrTruncated, torn.tail.Reason)}
		}
		if err != nil {
			r.closeFile()
			return Entry{}, err
		}
		rec, body, h, err := DecodeRecord(payload)
		if err != nil {
			r.closeFile()
			return Entry{}, &Problem{File: r.files[r.i].name, Offset: off, Err: err}
		}
		return Entry{File: r.files[r.i].name, Offset: off, Size: frameHeaderSize + int64(len(payload)),
			Record: rec, Body: body, Hash: h}, nil
	}
}

// readerAt returns a Reader over files (as NewReader listed them in dir)
// that starts at the frame at offset off of files[i]: a position an
// earlier Reader returned.
func readerAt(dir string, files []logFile, i int, off int64) (*Reader, error) {
	r := &Reader{dir: dir, files: files, i: i}
	if err := r.open(); err != nil {
		return nil, err
	}
	if off != r.sc.off {
		if _, err := r.f.Seek(off, io.SeekStart); err != nil {
			r.closeFile()
			return nil, fmt.Errorf("seek %s to offset %d: %w", files[i].name, off, err)
		}
		r.sc.r.Reset(r.f)
		r.sc.off = off
	}
	return r, nil
}

// openHook, when not nil, runs before a Reader opens a file it listed
// (name): tests remove or prune files between the listing and the open.
var openHook func(name string)

// fileGoneError is a file a Reader listed that was gone when it came to
// open it: on a live log, the writer's retention may have removed it in
// between (see Verify).
type fileGoneError struct {
	file logFile
	err  error
}

func (e *fileGoneError) Error() string { return fmt.Sprintf("open audit log file: %v", e.err) }
func (e *fileGoneError) Unwrap() error { return e.err }

func (r *Reader) open() error {
	name := r.files[r.i].name
	if openHook != nil {
		openHook(name)
	}
	f, err := os.Open(filepath.Join(r.dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return &fileGoneError{file: r.files[r.i], err: err}
	}
	if err != nil {
		return fmt.Errorf("open audit log file: %w", err)
	}
	sc, err := newFrameScanner(f, name)
	if err != nil {
		f.Close()
		return err
	}
	r.f, r.sc = f, sc
	return nil
}

func (r *Reader) closeFile() {
	if r.f != nil {
		r.f.Close()
	}
	r.f, r.sc = nil, nil
}

// Close releases the open file, if any.
func (r *Reader) Close() error {
	r.closeFile()
	return nil
}
