// Package auth is the proxy's local user store and its login check:
// password (argon2id) plus TOTP (package totp), with replay refusal,
// rate limits, lockout and audit events.
//
// Layering: the identity service holds a data key sealed in the TPM; it
// seals a random store key for this package as the named secret
// "userstore-key" (SecretSealer). The store key encrypts the whole store
// file (AES-256-GCM), so password hashes and TOTP secrets are useless on
// any other gate or after the identity's data key is lost. The file is
// deterministic CBOR, replaced atomically on every change.
//
// The store keeps only what the site file does not: credentials,
// enrolment and lockout state, and the credential generation that
// certificates issued by the user CA (package userca) embed. Bumping the
// generation (logout, revoke, disable) invalidates every certificate issued
// before; CheckCredential is what the CA's verifier asks on every new
// connection.
package auth
