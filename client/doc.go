// Package client is the otgate client library behind `otgate login`,
// `assets`, `connect` and `logout`: pure Go, for Linux, Windows and macOS.
//
// A profile lives in the user's config directory (os.UserConfigDir()/otgate,
// mode 0700, files 0600): the gate's address and certificate pin, the
// private key the client generated (it never leaves the machine) and the
// short-lived client certificate the gate issued for it. On Unix, Open
// refuses the credential, as ssh refuses an unprotected private key, when
// the directory or a file belongs to another user, the directory or the
// key is open to others, or others may write a file, and, as OpenSSH's
// StrictModes does, when a directory above the profile directory belongs
// to another user than the user or root or others may write in it (they
// could rename the profile away and put theirs in its place; a sticky
// directory such as /tmp passes) (*UnprotectedError names it, its mode
// and the fix); OpenToRevoke, for a logout, does not. A login refuses the
// same before anything goes to the gate, and makes no directory there.
// On Windows the directory's protected DACL, set at each login, is
// inherited by its files.
//
// A profile holds one credential. A login that replaces one of another
// gate (another key: an address is only a name) or of another user ends
// it at its gate once the new one is stored, as a logout would, and
// LoginResult.Replaced says whether it could; a renewal (the same user at
// the same gate) ends nothing.
//
// The gate's key is pinned (the SHA-256 of its public key): a first login
// sends no credential until something vouches for the key the gate shows,
// a pin the user took from the gate's console or confirmed at a terminal
// (LoginOptions.Pin; `otgate login` shows the key GateFingerprint reads
// and asks), a CA file, or the caller's explicit trust on first use
// (TrustFirstUse). Without any, Login returns a *FirstUseError naming the
// key. Later logins and every tunnel refuse a gate showing another key.
// A CA file vouches for every certificate its CA issued (another gate of
// the site, any server it certified), so a profile made with one is also
// bound to the gate's identity, the URI spiffe://SITE/gate/SERIAL its
// device certificate names: given (LoginOptions.GateID, `otgate login
// --gate-id`) or confirmed at a terminal at the first login (an
// *IdentityFirstUseError names it, and nothing is sent, otherwise), and
// required of every connection after it (an *IdentityChangedError names
// the identity expected and the one seen). A certificate of the CA that
// names no gate identity is refused.
//
// A Forwarder (`otgate connect`) keeps one notice stream to the gate
// (Session.Notices, wire.ALPNNotices) beside its tunnels and reports what
// the gate says about its own sessions: a deadline moved by a policy
// reload (OnNotice), the gate's warning ahead of a session's end (OnWarn),
// and why a session ended (OnNotice, before OnEnd). A session the gate
// says has ended has its local connection closed: the gate closes the
// tunnel itself, and should that close not come through (a middlebox, a
// half-open connection) the client closes both connections a second
// after the notice, so the local tool sees the end instead of waiting.
// The listener goes on serving: a new connection is a new session the
// gate decides afresh (refused at once, and closed, with a credential it
// no longer accepts). A gate without the
// stream, or one that closed it, leaves the warnings to local timers from
// the last deadline known (OnNoticeStream says so once).
//
// With FollowLogin, a Forwarder takes for its new tunnels the credential
// of a new login with its profile (after the old one expired or was
// revoked, or to renew it) when it is for the same gate (address, pin and
// CA file) and the same user, and reopens with it a notice stream the
// gate closed; tunnels open already keep theirs until the gate ends them.
// A login with the profile for another gate or user is not taken
// (Session.Follow; OnCredential hears of both).
package client
