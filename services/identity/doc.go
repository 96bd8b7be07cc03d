// Package identity is the gate's device identity: an ECDSA P-256 signing key
// that lives in the TPM and never leaves it, the device certificate built on
// it, a data key sealed to the measured boot state, named secrets encrypted
// under that data key, and short-lived workload certificates for mutual TLS
// between the gate's own services.
//
// # Layering
//
// The TPM holds two objects of ours, both children of the storage root key
// (SRK): the standard TCG ECC P-256 SRK template (tpm2.ECCSRKTemplate)
// under the owner hierarchy, which yields the same key as long as the owner
// seed is the same (it changes only on TPM2_Clear). A new identity makes it
// persistent at SRKHandle (0x81000001, reserved for the SRK by the TCG
// provisioning guidance) and records its name; a start uses it there when
// the name matches and re-creates it otherwise. A foreign key at that
// handle is left alone. The only other thing written to TPM NV is the
// identity marker at MarkerNVIndex (serial, key fingerprint, creation
// time), written with the persistent SRK once a new identity is in place;
// an empty state directory on a TPM showing either is a lost /perm
// (ErrEarlierIdentity), not a first boot.
//
//   - the device key: ECC P-256, fixedTPM|fixedParent|sensitiveDataOrigin|
//     userWithAuth|sign|noDA, no decrypt. fixedTPM and fixedParent make
//     TPM2_Duplicate impossible: the private part exists in the clear only
//     inside this TPM. Its public and wrapped private blobs are kept in
//     key.cbor in the state directory (/perm/identity).
//   - the sealed data key: a keyed-hash object holding 32 random bytes, with
//     no user auth (userWithAuth clear) and an authPolicy of TPM2_PolicyPCR
//     over the board's PCRs plus MeasuredPCR. Kept in seal.cbor. It is
//     sealed and unsealed through sessions salted with the SRK that
//     encrypt it on the TPM's bus (dataKeySession).
//
// Everything else (named secrets, the workload CA key) is encrypted in
// software with AES-256-GCM under the data key, the secret's name as
// additional data, so a TPM is touched once per boot for sealing and once per
// signature for the device key.
//
// # Measured boot
//
// With direct kernel boot no firmware or boot loader measures the image, so
// PID 1 extends MeasuredPCR (15) early, before it starts any service, with
// the SHA-256 digest of what it boots (its own binary, the service binaries
// and the applied configuration): it calls ExtendBootMeasurement. PCR 15 is
// not used by firmware (0-7), shim/grub (8, 9, 14), the Linux EFI stub (9),
// IMA (10), systemd-boot/systemd-stub (11, 12, 13) or the debug and
// resettable PCRs (16, 23); only systemd's user space uses it, and the
// appliance does not run systemd. It cannot be reset without a reboot.
//
// On the direct-kernel-boot boards (qemu-x86_64, qemu-aarch64: no board
// PCRs) PCR 15 alone binds the seal and init extends it, so the seal
// binds to what init measures: a modified init could extend the expected
// value. Only firmware measured boot of the kernel and initramfs into the
// board PCRs (generic-x86_64: OVMF, PCRs 0,2,4,7) closes that.
//
// # Dictionary attacks
//
// Both TPM objects carry noDA: the device key has an empty auth value, the
// sealed object is policy-only, so there is no secret to guess, and a local
// process sending wrong auth values can never drive the TPM into lockout and
// brick the gate.
//
// # Signed updates (planned, not implemented)
//
// A PCR policy names exact PCR values, so a new image would no longer unseal.
// The plan is to seal instead under
//
//	PolicyAuthorize(approvedPolicy, policyRef="otgate-boot", keySign=Name(U))
//
// where U is the vendor's update-signing public key, loaded with
// TPM2_LoadExternal. The vendor signs, for each release, the PolicyPCR
// digest the release will produce (board PCRs plus the new MeasuredPCR
// value, which the image builder can compute). At unseal time the service
// runs PolicyPCR with the current PCRs, asks the TPM to verify the vendor's
// signature over the resulting digest (TPM2_VerifySignature gives a ticket)
// and runs PolicyAuthorize with that ticket. The update bundle carries the
// signed policy; the sealed blob never changes. Rollback protection adds
// PolicyNV on a monotonic NV counter written by the update. Until then an
// update has to re-seal the data key while the old image still runs (read
// the data key, seal it to the new expected PCR values).
//
// # Authorized configuration changes
//
// The applied site policy is measured, so storing a new one would make the
// next boot unseal nothing. An authorized apply (`otgate site apply` by root
// on a healthy gate) first asks this service, through the root-only
// seal-next-boot operation, to seal the data key it holds to the PCR values
// of the next boot: board PCRs as now, MeasuredPCR =
// SHA-256(0^32 || digest) where digest is bootmeasure.Compute over the new
// policy (SealNextBoot). The object goes to NextSealFile; SealFile stays.
// Only then is the policy stored. At boot the current slot is tried, then
// the next one, which is promoted on success. A power cut at any point
// leaves either the old policy with the current slot or the new policy with
// the next slot. An offline edit of /perm has no slot and quarantines. See
// README.md, "Authorized policy changes".
//
// # Quarantine and break-glass recovery
//
// If the data key does not unseal because the PCRs differ from those it was
// sealed to (another image, another configuration, or tampering), the
// service starts in quarantine: it answers status requests and refuses
// everything else, both what needs the data key (secrets, workload
// certificates) and what vouches for the gate (sign-message, tls-cert: the device
// key is loaded, but an image it was not sealed to must not sign as this
// gate), and prints one line on the console saying why. Init keeps
// the deny-all ruleset and does not start the proxy. See README.md for the
// recovery procedure.
package identity
