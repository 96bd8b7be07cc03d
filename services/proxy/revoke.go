package proxy

import (
	"fmt"
	"math/big"
	"time"

	"github.com/otgate/otgate/audit"
)

// RecheckUser re-verifies the certificate of every live session of user
// and ends those that no longer pass (revoked serial, bumped generation,
// disabled or removed user). Wire it to the user store's OnRevoke.
//
// The sessions end, and their ends are announced on the user's notice
// streams (with the reason the audit log records), before the streams
// that no longer pass are closed: a stream closed first would drop the
// announcements, and the client could not say which session ended.
func (s *Server) RecheckUser(user string) int {
	s.admitEpoch.Add(1)
	n := 0
	for _, sess := range s.reg.snapshot() {
		if sess.user != user {
			continue
		}
		if _, err := s.cfg.CA.Verify(sess.chain); err != nil {
			s.cfg.Logf("proxy: ending session %s of %s: %v", sess.id, user, err)
			sess.end(EndRevoked + ": " + err.Error())
			sess.noticeEnded(sess.reason(""))
			n++
		}
	}
	s.notices.recheck(user, func(chain [][]byte) error { _, err := s.cfg.CA.Verify(chain); return err })
	return n
}

// RevokeUser bumps the user's credential generation and ends the user's
// live sessions; it returns how many ended.
func (s *Server) RevokeUser(user, why string) (int, error) {
	live := s.userSessions(user)
	if _, err := s.cfg.Users.Revoke(user, why); err != nil {
		return 0, fmt.Errorf("revoke %q: %w", user, err)
	}
	s.event(audit.Event{Type: "admin-revoke", User: user, Reason: why})
	s.RecheckUser(user)
	return countEnded(live), nil
}

// RevokeSerial revokes one certificate (hex serial) of user and ends the
// sessions opened with it.
func (s *Server) RevokeSerial(user, serialHex, why string) (int, error) {
	serial, ok := new(big.Int).SetString(serialHex, 16)
	if !ok || serial.Sign() <= 0 {
		return 0, fmt.Errorf("revoke: serial %q is not a positive hex number", serialHex)
	}
	// The serial's certificate can live at most MaxCertValidity from now.
	notAfter := s.cfg.Now().Add(s.cfg.MaxCertValidity + time.Minute)
	for _, sess := range s.reg.snapshot() {
		if sess.user == user && sess.serial == serial.Text(16) && !sess.certEnd.IsZero() {
			notAfter = sess.certEnd.Add(time.Minute)
		}
	}
	live := s.userSessions(user)
	if err := s.cfg.Users.RevokeCertificate(user, serial, notAfter, why); err != nil {
		return 0, fmt.Errorf("revoke serial %s of %q: %w", serialHex, user, err)
	}
	s.event(audit.Event{Type: "admin-revoke-serial", User: user, Reason: "serial " + serial.Text(16) + ": " + why})
	s.RecheckUser(user)
	return countEnded(live), nil
}

// Unlock lifts a login lockout.
func (s *Server) Unlock(user string) error {
	if err := s.cfg.Users.Unlock(user); err != nil {
		return fmt.Errorf("unlock %q: %w", user, err)
	}
	return nil
}

func (s *Server) userSessions(user string) []*session {
	var out []*session
	for _, x := range s.reg.snapshot() {
		if x.user == user {
			out = append(out, x)
		}
	}
	return out
}

// countEnded counts the sessions of ss that have been ended (by anyone:
// the store's OnRevoke hook may have been first).
func countEnded(ss []*session) int {
	n := 0
	for _, x := range ss {
		select {
		case <-x.ended:
			n++
		default:
		}
	}
	return n
}
