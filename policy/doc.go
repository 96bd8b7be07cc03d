// Package policy is the gate's decision engine: who may reach which
// asset, over which protocol, from where and when.
//
// Compile turns a validated site file (package site) into an immutable
// Policy that is safe for concurrent use; a reload compiles the new file
// and swaps the pointer atomically (Holder), then calls Reevaluate for
// every live session so the proxy can end those the new policy no longer
// allows.
//
// Decide answers one request. The rules, in order:
//
//  1. An unknown or disabled user, a source address outside the user's
//     source networks, an unknown asset or a protocol the asset does not
//     serve is denied, naming why (Rule "unknown-user", "user-disabled",
//     "source-network", "unknown-asset", "protocol-not-served").
//  2. The grants that apply are those naming the user or one of the
//     user's roles, the asset or its zone, and the protocol (a deny grant
//     without protocols covers every protocol), and whose schedule
//     (schedule.go) contains the request's time.
//  3. An applying deny grant wins over every allow grant (the first deny
//     grant in file order names the decision).
//  4. Otherwise, among applying allow grants the most specific one makes
//     the decision: a grant naming the asset beats one naming its zone;
//     then a grant naming the user beats one naming a role; then the
//     earlier grant in the file. Its compiled Modbus rules are the
//     session's (grants' rules are never merged: the chosen grant's rules
//     alone apply, so what a session may do is always one grant, named in
//     the decision and the session log). A gateway's grant may have
//     per-unit blocks instead of one set of rules; each request is then
//     judged by the block listing its unit, named in the session log as
//     the grant and the block's units ("plc-gw units 2").
//  5. No applying grant: "default-deny".
//
// Every decision says until when it holds: Until is the first instant
// after the request's time at which Decide would answer differently (a
// different allow/deny or a different rule), looking up to Horizon ahead;
// zero when nothing changes within the horizon.
//
// Binaries that compile policies must embed the time zone database
// (import _ "time/tzdata"): the appliance image has no zoneinfo files.
package policy
