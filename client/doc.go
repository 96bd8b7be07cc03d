// Package client is the otgate client library behind `otgate login`,
// `assets`, `connect` and `logout`: pure Go, for Linux, Windows and macOS.
//
// A profile lives in the user's config directory (os.UserConfigDir()/otgate,
// mode 0700, files 0600): the gate's address and certificate pin, the
// private key the client generated (it never leaves the machine) and the
// short-lived client certificate the gate issued for it.
//
// The gate's certificate is pinned on first use (TOFU: the SHA-256 of its
// public key is printed for the user to compare with the gate's console),
// or checked against a CA file given at login.
//
// A Forwarder (`otgate connect`) keeps one notice stream to the gate
// (Session.Notices, wire.ALPNNotices) beside its tunnels and reports what
// the gate says about its own sessions: a deadline moved by a policy
// reload (OnNotice), the gate's warning ahead of a session's end (OnWarn),
// and why a session ended (OnNotice, before OnEnd). A gate without the
// stream, or one that closed it, leaves the warnings to local timers from
// the last deadline known (OnNoticeStream says so once).
package client
