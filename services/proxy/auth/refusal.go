package auth

import "errors"

// asRefusal is errors.As for *Refusal.
func asRefusal(err error, r **Refusal) bool { return errors.As(err, r) }

// ReasonOf is the refusal reason of an Authenticate error, or ReasonNone
// when err is nil or not a refusal.
func ReasonOf(err error) Reason {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Reason
	}
	return ReasonNone
}
