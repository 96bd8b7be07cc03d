package modbus

import (
	"errors"
	"fmt"
)

// Sentinel errors; every parse error wraps one of them.
var (
	// ErrMalformed: the frame breaks the specification.
	ErrMalformed = errors.New("malformed Modbus frame")
	// ErrOversized: the MBAP length announces more than the ADU limit.
	ErrOversized = errors.New("oversized Modbus frame")
	// ErrMismatch: a response does not answer the request it was matched to.
	ErrMismatch = errors.New("response does not match request")
)

// FieldError is a precise parse error: which function, what is wrong.
type FieldError struct {
	Function Function
	Response bool
	Detail   string
	kind     error
}

func (e *FieldError) Error() string {
	dir := ""
	if e.Response {
		dir = " response"
	}
	return fmt.Sprintf("function %d%s: %s", uint8(e.Function), dir, e.Detail)
}

func (e *FieldError) Unwrap() error { return e.kind }

func reqErr(f Function, format string, args ...any) error {
	return &FieldError{Function: f, Detail: fmt.Sprintf(format, args...), kind: ErrMalformed}
}

func respErr(f Function, format string, args ...any) error {
	return &FieldError{Function: f, Response: true, Detail: fmt.Sprintf(format, args...), kind: ErrMalformed}
}

func matchErr(f Function, format string, args ...any) error {
	return &FieldError{Function: f, Response: true, Detail: fmt.Sprintf(format, args...), kind: ErrMismatch}
}
