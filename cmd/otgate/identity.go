//go:build linux

package main

import (
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/otgate/otgate/internal/ready"
	"github.com/otgate/otgate/services/identity"
	"github.com/otgate/otgate/services/identity/api"
)

func init() {
	register(command{
		name:    "identity",
		summary: "device identity: csr, install-cert, renew-cert, status, check-trust, reset, reseal",
		run:     runIdentity,
	})
}

const identityUsage = `usage: otgate identity <subcommand> [flags]

  csr           write a certificate request signed by the TPM device key (-out)
  install-cert  install a certificate issued for the device key (-in, PEM chain or DER);
                refused unless it is an end entity for TLS server use, valid now,
                and each certificate of the chain is a CA that signed the one before
  renew-cert -yes  replace the device certificate with a new self-signed end-entity
                one for the same key (client pins stay valid); the remedy for an
                identity whose device certificate is a CA
  status        ask the identity service for its state (quarantine, dev mode)
  reset -yes    move the identity aside and create a NEW one (a different device)
  reseal -yes   in quarantine only: seal a new data key to the current boot;
                secrets sealed under the old one are moved aside, unreadable
  check-trust   init's trust gate (service row "trust"): exit 0 when the gate
                is not in quarantine; in quarantine say why and exit 100 (init:
                failed, not restarted), so what depends on it never starts;
                -wait D waits up to D for the identity service to answer

Run "otgate identity <subcommand> -h" for the flags.`

func runIdentity(args []string) error {
	if len(args) == 0 {
		return usagef("identity: missing subcommand\n%s", identityUsage)
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("otgate identity "+sub, flag.ContinueOnError)
	switch sub {
	case "csr":
		f := identity.RegisterFlags(fs)
		out := fs.String("out", "-", "file to write the PEM CSR to (- for standard output)")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		return identityCSR(f, *out, os.Stdout)
	case "install-cert":
		f := identity.RegisterFlags(fs)
		in := fs.String("in", "", "certificate file (PEM chain, leaf first, or DER)")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		return identityInstallCert(f, *in)
	case "renew-cert":
		f := identity.RegisterFlags(fs)
		yes := fs.Bool("yes", false, "really do it")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if !*yes {
			return errors.New("identity renew-cert: refusing without -yes (the device certificate, an installed enterprise one too, is replaced by a self-signed one)")
		}
		return identityRenewCert(f, os.Stdout)
	case "status":
		socket := fs.String("socket", api.DefaultSocket, "identity service socket")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		return identityStatus(*socket, os.Stdout)
	case "check-trust":
		socket := fs.String("socket", api.DefaultSocket, "identity service socket")
		wait := fs.Duration("wait", 0, "wait this long for the identity service to answer (0: it must answer now); past it, fail without restart")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		return identityCheckTrust(*socket, *wait, os.Stdout, os.Exit, ready.Status)
	case "reset", "reseal":
		f := identity.RegisterFlags(fs)
		yes := fs.Bool("yes", false, "really do it")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if !*yes {
			return fmt.Errorf("identity %s: refusing without -yes (%s)", sub, map[string]string{
				"reset":  "this creates a NEW device identity: the gate becomes a different device and must be enrolled again",
				"reseal": "secrets sealed under the old data key become unreadable",
			}[sub])
		}
		cfg, err := f.Config(true, os.Stderr)
		if err != nil {
			return err
		}
		if sub == "reset" {
			old, err := identity.Reset(cfg)
			if err != nil {
				return err
			}
			if old == "" {
				old = "(there was none)"
			}
			fmt.Printf("new identity in %s; the old one is in %s\n", cfg.StateDir, old)
			return nil
		}
		moved, err := identity.Reseal(cfg)
		if err != nil {
			return err
		}
		fmt.Printf("data key resealed to the current boot; old secrets moved to %s\n", moved)
		return nil
	default:
		return usagef("identity: unknown subcommand %q\n%s", sub, identityUsage)
	}
}

func identityCSR(f *identity.Flags, out string, stdout io.Writer) error {
	id, err := f.Open(false, os.Stderr)
	if err != nil {
		return err
	}
	defer id.Close()
	der, err := id.CSR()
	if err != nil {
		return err
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	if out == "-" {
		_, err = stdout.Write(b)
		return err
	}
	if err := os.WriteFile(out, b, 0o644); err != nil {
		return fmt.Errorf("identity csr: %w", err)
	}
	return nil
}

func identityInstallCert(f *identity.Flags, in string) error {
	if in == "" {
		return usagef("identity install-cert: -in is required")
	}
	b, err := os.ReadFile(in)
	if err != nil {
		return fmt.Errorf("identity install-cert: %w", err)
	}
	id, err := f.Open(false, os.Stderr)
	if err != nil {
		return err
	}
	defer id.Close()
	if err := id.InstallCertificate(b); err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	return nil
}

func identityRenewCert(f *identity.Flags, w io.Writer) error {
	id, err := f.Open(false, os.Stderr)
	if err != nil {
		return err
	}
	defer id.Close()
	cert, err := id.RenewSelfSignedCertificate()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "new self-signed device certificate (end entity, serial %x), valid until %s; the proxy presents it after its next start (a reboot, or init restarting it)\n",
		cert.SerialNumber, cert.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

func identityStatus(socket string, w io.Writer) error {
	c, err := api.Dial(socket)
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := c.Status()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "device:     %s\n", st.DeviceURI)
	if st.DevMode {
		fmt.Fprintln(w, "key:        DEV MODE SOFTWARE KEY (not a production gate)")
	} else {
		fmt.Fprintln(w, "key:        TPM")
	}
	if st.CertNotAfter != 0 {
		fmt.Fprintf(w, "certificate: valid until %s\n", time.Unix(st.CertNotAfter, 0).UTC().Format(time.RFC3339))
	}
	for _, warning := range st.CertWarnings {
		fmt.Fprintf(w, "WARNING:    %s\n", warning)
	}
	if st.Quarantine {
		fmt.Fprintf(w, "state:      QUARANTINE\nreason:     %s\nwhat to do: %s\n", st.Reason, st.Remedy)
		return errors.New("identity: gate is in quarantine")
	}
	fmt.Fprintln(w, "state:      ok")
	if !st.DevMode {
		// The value `otgate audit verify --anchor` checks a copy of the
		// audit log against.
		switch v, defined, err := c.AuditAnchor(); {
		case err != nil:
			fmt.Fprintf(w, "audit anchor: unreadable: %v\n", err)
		case !defined:
			fmt.Fprintln(w, "audit anchor: none yet (the proxy has not opened its log on this TPM)")
		default:
			fmt.Fprintf(w, "audit anchor: %d (TPM counter; otgate audit verify --anchor %d checks a copy of the log against it)\n", v, v)
		}
	}
	return nil
}
