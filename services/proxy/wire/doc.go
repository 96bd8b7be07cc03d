// Package wire is the protocol between the otgate client and the gate's
// proxy. Both kinds of connection arrive on one TLS 1.3 port and are told
// apart by ALPN:
//
//   - ALPNLogin ("otgate-login/1"): framed CBOR requests and responses
//     (Request, Response; 4-byte big-endian length, then deterministic
//     CBOR). A login needs no client certificate: user, password, TOTP code
//     and the public key the client generated; the answer is a short-lived
//     client certificate for that key (the private key never leaves the
//     client). Assets and logout need the client certificate.
//   - ALPNTunnel ("otgate-tunnel/1"): mutual TLS with the client
//     certificate. The client sends one Header naming the asset and the
//     protocol; the gate answers one Reply (accept or deny, with the
//     decision's rule, reason and until). After an accept the stream
//     carries the application's raw bytes both ways.
//   - ALPNNotices ("otgate-notices/1"): mutual TLS with the client
//     certificate, checked as for a tunnel. The client sends nothing;
//     the gate sends framed Notice messages: hello, then deadline,
//     warning and ended notices about the user's sessions, and a final
//     closed notice with the reason when it closes the stream (or
//     refuses it).
//
// The gate decodes what clients send strictly (a field it does not know is
// an error: it could ask for something the gate would not do); clients
// skip fields they do not know in what the gate sends (ReadFromGate), so a
// newer gate can add to a reply or a notice without breaking clients
// already deployed.
//
// The Header is a small binary record so the gate can parse it without a
// general decoder before any decision:
//
//	"OT" | version (1) | flags (0) | asset length (1..63) | asset | protocol length (1..32) | protocol
package wire
