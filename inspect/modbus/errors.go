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
	// ErrIllegalRequest: a request framed correctly (its MBAP length, its
	// function's layout and any byte count agree) whose values the
	// specification forbids: a quantity out of range, a span past the
	// end of the address space, a byte count that does not match the
	// quantity, a coil value other than on or off. A device answers it
	// with an exception (FieldError.Exception: 02 or 03, as the
	// specification's state diagrams say), and so does the gate, without
	// forwarding it; the session goes on.
	ErrIllegalRequest = errors.New("illegal Modbus request")
)

// FieldError is a precise parse error: which function, what is wrong.
type FieldError struct {
	Function Function
	Response bool
	Detail   string
	// Exception is what a device answers to an ErrIllegalRequest; zero
	// for the other kinds.
	Exception ExceptionCode
	kind      error
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

// illegalValue is an ErrIllegalRequest a device answers with 03.
func illegalValue(f Function, format string, args ...any) error {
	return &FieldError{Function: f, Detail: fmt.Sprintf(format, args...), Exception: ExIllegalDataValue, kind: ErrIllegalRequest}
}

// illegalAddress is an ErrIllegalRequest a device answers with 02.
func illegalAddress(f Function, format string, args ...any) error {
	return &FieldError{Function: f, Detail: fmt.Sprintf(format, args...), Exception: ExIllegalDataAddress, kind: ErrIllegalRequest}
}

func respErr(f Function, format string, args ...any) error {
	return &FieldError{Function: f, Response: true, Detail: fmt.Sprintf(format, args...), kind: ErrMalformed}
}

func matchErr(f Function, format string, args ...any) error {
	return &FieldError{Function: f, Response: true, Detail: fmt.Sprintf(format, args...), kind: ErrMismatch}
}
