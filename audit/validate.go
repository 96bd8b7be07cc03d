package audit

import (
	"errors"
	"fmt"
)

// ErrInvalidBody is wrapped by errors about a body that misses a required
// field or holds an impossible value.
var ErrInvalidBody = errors.New("invalid record body")

func required(kind Kind, field, value string) error {
	if value == "" {
		return fmt.Errorf("%w: %s: %s is empty", ErrInvalidBody, kind, field)
	}
	return nil
}

func (r Rotation) validate() error {
	if err := required(KindRotation, "log id", r.LogID); err != nil {
		return err
	}
	if len(r.PrevHead) != HashSize {
		return fmt.Errorf("%w: rotation: prev head has %d bytes, want %d", ErrInvalidBody, len(r.PrevHead), HashSize)
	}
	return nil
}

func (s SessionStart) validate() error {
	for _, f := range []struct{ name, v string }{
		{"session id", s.SessionID}, {"user", s.User}, {"asset", s.Asset},
		{"protocol", s.Protocol}, {"rule", s.Rule},
	} {
		if err := required(KindSessionStart, f.name, f.v); err != nil {
			return err
		}
	}
	return nil
}

func (p Payload) validate() error {
	if err := required(KindPayload, "session id", p.SessionID); err != nil {
		return err
	}
	if p.Direction != ToAsset && p.Direction != ToClient {
		return fmt.Errorf("%w: payload: direction %d (want 1 to asset or 2 to client)", ErrInvalidBody, p.Direction)
	}
	if uint64(len(p.Raw)) > p.Bytes {
		return fmt.Errorf("%w: payload: %d raw bytes but byte count %d", ErrInvalidBody, len(p.Raw), p.Bytes)
	}
	if p.Decoded != nil && p.Decoded.Protocol == "" {
		return fmt.Errorf("%w: payload: decoded record without protocol", ErrInvalidBody)
	}
	return nil
}

func (e Event) validate() error { return required(KindEvent, "type", e.Type) }

func (s SessionEnd) validate() error {
	if err := required(KindSessionEnd, "session id", s.SessionID); err != nil {
		return err
	}
	return required(KindSessionEnd, "reason", s.Reason)
}

func (c Checkpoint) validate() error {
	if c.First > c.Last {
		return fmt.Errorf("%w: checkpoint: range %d..%d is reversed", ErrInvalidBody, c.First, c.Last)
	}
	if len(c.Head) != HashSize {
		return fmt.Errorf("%w: checkpoint: head has %d bytes, want %d", ErrInvalidBody, len(c.Head), HashSize)
	}
	if err := required(KindCheckpoint, "key id", c.KeyID); err != nil {
		return err
	}
	if len(c.Signature) == 0 {
		return fmt.Errorf("%w: checkpoint: empty signature", ErrInvalidBody)
	}
	return nil
}
