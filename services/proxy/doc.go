// Package proxy is the gate's identity-aware proxy: one TLS 1.3 listener
// on the uplink serving two kinds of connection (see package wire):
//
//   - login (ALPN otgate-login/1): password + TOTP checked by the user
//     store (package auth) yield a short-lived client certificate from the
//     user CA (package auth/userca) for a key the client made; with that
//     certificate the client can list what it may reach now (assets) and
//     log out (bump its credential generation);
//   - tunnel (ALPN otgate-tunnel/1): mutual TLS; the client names an asset
//     and a protocol, the proxy verifies the certificate (not expired, not
//     revoked, generation current), asks the policy (Decider), refuses with
//     the reason or appends the session-start record durably to the audit
//     log, and only then dials the asset's underlay address and relays:
//     Modbus through inspect/modbus with the decision's rules and a decoded
//     transcript, anything else as raw bytes with payload records.
//
// A session ends when either side closes, after the idle timeout, at the
// decision's Until (the client was told it in the accept reply), when an
// admin revokes the user or certificate, or when a policy reload no longer
// allows it (or moved its asset). Every end is recorded with its reason and
// byte counts; the audit log checkpoints at every session end. A session
// still allowed at a shift change or a reload moves to the grant and rules
// that decide it now, its connection up (handover.go, reload.go).
//
// Layering: the server holds no secrets of its own. The TLS key is the
// device identity's (TPM-backed crypto.Signer), the CA key and the user
// store are sealed by the identity service, checkpoints are signed by the
// device key.
package proxy
