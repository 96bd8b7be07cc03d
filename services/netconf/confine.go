package netconf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/otgate/otgate/internal/sandbox"
)

// Confinement makes cfg's paths absolute, creates what the service
// would create later and a rule must name now, and returns the files
// the service needs for the rest of its life (sandbox.RestrictFiles).
// It parses DHCP from the uplink: a flaw there reaches only these.
//
//   - Read: the policy's directory (the policy is replaced by a rename
//     into it, a new file each time; policywatch's stat needs no right).
//   - Write, the socket's directory (created if missing): listen removes
//     a stale socket and binds a new one. On the device it is the
//     service's own /run/otgate/netconf.
//   - Write, the resolver file's directory (created if missing; on the
//     device also /run/otgate/netconf): Resolver.Write writes a temporary file
//     and renames it over Path.
//   - Write, the file Resolver.Etc only (/etc/resolv.conf, created empty
//     if missing; Resolver.EtcInPlace is set): it is rewritten in place,
//     so nothing else in /etc (passwd, otgate/boot.cbor, the image's
//     default policy) can be written, created, renamed or removed. An Etc
//     that is not a regular file is not granted (a symlink to Path needs
//     nothing; another is left alone, with the not-writable warning), nor
//     one that cannot be created (a read-only /etc): Etc is then cleared.
//   - Write, the DHCP hint's directory (created if missing, as saving
//     the hint would; when it cannot be, the hint is not used): the hint
//     is written by a rename, and removed when a lease is lost.
//   - Write, /proc/sys/net/ipv4/conf: promote_secondaries of each
//     interface it manages, VLAN interfaces made later included (their
//     directories do not exist yet). It opens up the other per-interface
//     IPv4 settings too (forwarding, rp_filter...), which CAP_NET_ADMIN
//     lets it write; not the rest of /proc/sys/net (ip_forward). The
//     directory is held open (by sandbox.RestrictFiles: procfs would
//     otherwise give it a new inode, which the rule would miss).
//
// Nothing else: no device (the TPM), no other service's state, no
// /sys (netlink reads /sys/class/net only for a TUN device's owner and
// flags, which netconf does not use; refused, they are left zero), no
// executing a program. The caller loads what it reads once before it
// confines itself (the time zone of its log lines: time.Now().Zone()).
func Confinement(cfg *Config, logf func(string, ...any)) (sandbox.Files, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	var f sandbox.Files
	if cfg.Resolver == nil {
		cfg.Resolver = &Resolver{Path: DefaultResolvConf} // the service's default
	}
	if err := sandbox.Absolute(&cfg.PolicyPath, &cfg.SocketPath, &cfg.HintPath, &cfg.Resolver.Path, &cfg.Resolver.Etc); err != nil {
		return f, fmt.Errorf("netconf: %w", err)
	}
	mkdir := func(p string) error {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return fmt.Errorf("netconf: %w", err)
		}
		return nil
	}
	if cfg.PolicyPath != "" {
		f.AddRead(filepath.Dir(cfg.PolicyPath))
	}
	if cfg.SocketPath != "" {
		d := filepath.Dir(cfg.SocketPath)
		if err := mkdir(d); err != nil {
			return f, err
		}
		f.AddWrite(d)
	}
	r := cfg.Resolver
	if r.Path != "" {
		d := filepath.Dir(r.Path)
		if err := mkdir(d); err != nil {
			return f, err
		}
		f.AddWrite(d)
	}
	if r.Path != "" && r.Etc != "" {
		ok, err := prepareEtc(r.Etc)
		switch {
		case ok:
			r.EtcInPlace = true
			f.AddWrite(r.Etc)
		case err != nil:
			logf("netconf: %s is not writable (%v); DNS settings are in %s only", r.Etc, err, r.Path)
			r.Etc = ""
		default:
			r.EtcInPlace = true // Write leaves a symlink to Path alone, refuses another
		}
	}
	if cfg.HintPath != "" {
		d := filepath.Dir(cfg.HintPath)
		if err := mkdir(d); err != nil {
			// Only a hint: the client asks for any address instead.
			logf("%v; no DHCP address hint", err)
			cfg.HintPath = ""
		} else {
			f.AddWrite(d)
		}
	}
	f.AddWrite(filepath.Join(procSysNet, "ipv4", "conf"))
	return f, nil
}

// prepareEtc makes sure path is a regular file, creating it empty (as a
// missing resolv.conf, the resolver's defaults) when there is none. It
// says whether it is one; false without an error: something else (a
// symlink) that is left as it is.
func prepareEtc(path string) (bool, error) {
	st, err := os.Lstat(path)
	switch {
	case err == nil:
		return st.Mode().IsRegular(), nil
	case !errors.Is(err, fs.ErrNotExist):
		return false, err
	}
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return false, err
	}
	return true, fh.Close()
}
