package site

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"
)

// MaxFileSize bounds a site file (a plant with tens of thousands of
// assets fits comfortably).
const MaxFileSize = 64 << 20

// Options tune Parse.
type Options struct {
	// Now is the time exception expiries are checked against
	// (zero: time.Now()).
	Now time.Time
}

// Load reads, decodes and validates the site file at path. Errors are an
// ErrorList naming the file (by its base name), line and field.
func Load(path string, opts Options) (*Site, []byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("site: %w", err)
	}
	s, err := Parse(filepath.Base(path), b, opts)
	if err != nil {
		return nil, nil, err
	}
	return s, b, nil
}

// Parse decodes and validates a site file's content; name is used in
// error messages. On any problem it returns a nil Site and an ErrorList
// holding every problem found.
func Parse(name string, data []byte, opts Options) (s *Site, err error) {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	d := &decoder{file: name, lines: map[string]int{}, failed: map[string]bool{}}
	defer func() {
		// The YAML parser must never take the caller down: a panic on a
		// hostile file is a rejected file.
		if r := recover(); r != nil {
			s, err = nil, ErrorList{{File: name, Msg: fmt.Sprintf("cannot parse: %v", r)}}
		}
	}()
	if len(data) > MaxFileSize {
		return nil, ErrorList{{File: name, Msg: fmt.Sprintf("file is %d bytes, more than the limit of %d", len(data), MaxFileSize)}}
	}
	root, perr := parseYAML(data)
	if perr != nil {
		return nil, ErrorList{{File: name, Line: perr.line, Msg: perr.msg}}
	}
	rejectAnchors(d, root)
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	s = &Site{}
	decodeTop(d, root, s)
	// Validate even when decoding found problems, so one run reports
	// everything; validators skip fields that failed to decode.
	applyOverlayDefaults(s)
	v := &validator{d: d, now: now}
	for _, sec := range sections {
		if sec.validate != nil {
			sec.validate(v, s)
		}
	}
	if len(d.errs) > 0 {
		d.errs.sort()
		return nil, d.errs
	}
	return s, nil
}

type parseError struct {
	line int
	msg  string
}

// parseYAML parses exactly one YAML document.
func parseYAML(data []byte) (*yaml.Node, *parseError) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &parseError{msg: "empty site file"}
		}
		return nil, yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, yamlError(err)
		}
		return nil, &parseError{line: extra.Line, msg: "more than one YAML document (want exactly one)"}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, &parseError{msg: "empty site file"}
	}
	return doc.Content[0], nil
}

func yamlError(err error) *parseError {
	// yaml.v3 says "yaml: line 7: did not find expected key".
	var line int
	msg := err.Error()
	if _, serr := fmt.Sscanf(msg, "yaml: line %d:", &line); serr == nil {
		if i := len(fmt.Sprintf("yaml: line %d: ", line)); i <= len(msg) {
			msg = msg[i:]
		}
	}
	return &parseError{line: line, msg: "bad YAML: " + msg}
}

func decodeTop(d *decoder, root *yaml.Node, s *Site) {
	f := d.fields(root, "", sectionKeys()...)
	if f == nil {
		return
	}
	for _, sec := range sections {
		n, ok := f[sec.key]
		if !ok {
			if sec.required {
				d.nodeErrorf(root, sec.key, "missing (required)")
			}
			continue
		}
		sec.decode(d, n, sec.key, s)
	}
}

// rejectAnchors reports every anchor and alias: a site file says what it
// means where it means it, and aliases can expand without bound.
func rejectAnchors(d *decoder, n *yaml.Node) {
	if n.Anchor != "" || n.Kind == yaml.AliasNode {
		d.nodeErrorf(n, "", "anchors and aliases are not allowed in a site file")
		return
	}
	for _, c := range n.Content {
		rejectAnchors(d, c)
	}
}
