package modbus

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Rules say which Modbus operations a grant allows. The zero value allows
// nothing. In a site file:
//
//	modbus:
//	  units: [1]
//	  functions: [read-write]
//	  holding-registers:
//	    read: ["0-99"]
//	    write: ["50-55"]
//	  limits:
//	    - {registers: "52", min: 0, max: 100}
//
// Reads need a read range and writes a write range covering the whole
// requested span; a write range does not grant reads. A table without
// ranges allows no access to it. Functions are named sets (see FunctionSets),
// canonical function names ("write-single-register") or numbers ("16").
//
// A grant for a TCP-to-serial gateway (one address, a device per unit id
// behind it) may instead give a list of Rules, one block per device,
// each with its own units; CompileBlocks compiles them and a request is
// judged by the block that lists its unit:
//
//	modbus:
//	  - units: [1]
//	    functions: [read-write]
//	    holding-registers: {read: ["0-99"], write: ["50-55"]}
//	  - units: [2]
//	    functions: [read-only]
//	    input-registers: {read: ["0-9"]}
type Rules struct {
	// Name is the rule's name in deny reasons (the loader sets it to the
	// grant's name).
	Name             string       `yaml:"name,omitempty"`
	Units            []int        `yaml:"units"`
	Functions        []string     `yaml:"functions"`
	Coils            TableRanges  `yaml:"coils,omitempty"`
	DiscreteInputs   TableRanges  `yaml:"discrete-inputs,omitempty"`
	HoldingRegisters TableRanges  `yaml:"holding-registers,omitempty"`
	InputRegisters   TableRanges  `yaml:"input-registers,omitempty"`
	Limits           []ValueLimit `yaml:"limits,omitempty"`
}

// TableRanges are the address ranges of one table open for reading and for
// writing.
type TableRanges struct {
	Read  []Range `yaml:"read,omitempty"`
	Write []Range `yaml:"write,omitempty"`
}

// ValueLimit bounds the values written to holding registers in Registers
// (inclusive). Signed reads the register as int16.
type ValueLimit struct {
	Registers Range `yaml:"registers"`
	Min       int   `yaml:"min"`
	Max       int   `yaml:"max"`
	Signed    bool  `yaml:"signed,omitempty"`
}

// Range is an inclusive address range, written "50-55" or "52".
type Range struct {
	First, Last uint16
}

// String renders "50-55", or "52" for a single address.
func (r Range) String() string {
	if r.First == r.Last {
		return strconv.Itoa(int(r.First))
	}
	return strconv.Itoa(int(r.First)) + "-" + strconv.Itoa(int(r.Last))
}

// ParseRange parses "50-55" or "52".
func ParseRange(s string) (Range, error) {
	first, last, isSpan := strings.Cut(strings.TrimSpace(s), "-")
	a, err := parseAddress(first)
	if err != nil {
		return Range{}, fmt.Errorf("range %q: %w", s, err)
	}
	b := a
	if isSpan {
		if b, err = parseAddress(last); err != nil {
			return Range{}, fmt.Errorf("range %q: %w", s, err)
		}
	}
	if a > b {
		return Range{}, fmt.Errorf("range %q: first address %d is after last address %d", s, a, b)
	}
	return Range{uint16(a), uint16(b)}, nil
}

func parseAddress(s string) (int, error) {
	s = strings.TrimSpace(s)
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("address %q has a leading zero (octal to YAML elsewhere in the file): write the decimal number without it", s)
	}
	if strings.HasPrefix(s, "+") {
		// strconv takes "+010" for 10, YAML for octal 8.
		return 0, fmt.Errorf("address %q is not a decimal number: write the digits without a sign", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 65535 {
		return 0, fmt.Errorf("address %q is not a number in 0..65535", s)
	}
	return n, nil
}

// MarshalText implements encoding.TextMarshaler.
func (r Range) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Range) UnmarshalText(b []byte) error {
	v, err := ParseRange(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// UnmarshalYAML accepts "50-55", "52" and 52.
func (r *Range) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: address range must be a scalar like \"50-55\" or 52", n.Line)
	}
	v, err := ParseRange(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*r = v
	return nil
}

// MarshalYAML renders the range as a string.
func (r Range) MarshalYAML() (any, error) { return r.String(), nil }

// Validate checks every field and returns the first problem, naming it
// ("holding-registers.write[1]: ...").
func (r *Rules) Validate() error {
	_, err := r.Compile()
	return err
}

func (r *Rules) errorf(format string, args ...any) error {
	prefix := "modbus rules"
	if r.Name != "" {
		prefix += " " + strconv.Quote(r.Name)
	}
	return fmt.Errorf(prefix+": "+format, args...)
}
