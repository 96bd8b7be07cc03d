package site

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// NTS is the uplink's optional nts section: time servers reached with
// Network Time Security (RFC 8915), and the trust anchor for the TLS
// certificates of their key exchange (NTS-KE):
//
//	uplink:
//	  mode: dhcp
//	  nts:
//	    servers: [time.plant.example, 192.168.10.1:4460]  # NTS-KE host[:port]
//	    ca: |
//	      -----BEGIN CERTIFICATE-----
//	      ...
//	      -----END CERTIFICATE-----
//
// The gate has no system CA bundle: the site file carries the CA (one or
// more PEM certificates, each a CA: basicConstraints CA:TRUE) that signs
// the servers' certificates. A server named by address needs that
// address in its certificate's subjectAltName (IP), one named by DNS
// name the name.
//
// With nts servers named, timesync uses only them: never the plain NTP
// servers of a DHCP lease (an attacker on the uplink could otherwise
// force the downgrade by blocking port 4460); naming uplink.ntp as well
// is an error, as those would never be used.
type NTS struct {
	// Servers: the NTS-KE servers, in the file's order, each "host:port"
	// (the port 4460 when the file names none); host as in Uplink.NTP.
	Servers []string `cbor:"1,keyasint,omitempty"`
	// CA: the trust anchors, DER certificates in the file's order.
	CA [][]byte `cbor:"2,keyasint,omitempty"`
}

// DefaultNTSPort is the NTS-KE port (RFC 8915).
const DefaultNTSPort = 4460

// MaxNTSCAs bounds the certificates of uplink.nts.ca.
const MaxNTSCAs = 8

// CAPool returns the trust anchors as a pool (and as certificates). The
// compiled policy holds only certificates that parsed when the site file
// was checked; an error here means a damaged policy.
func (n *NTS) CAPool() (*x509.CertPool, []*x509.Certificate, error) {
	pool := x509.NewCertPool()
	var certs []*x509.Certificate
	for i, der := range n.CA {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, fmt.Errorf("uplink.nts.ca certificate %d: %w", i+1, err)
		}
		pool.AddCert(c)
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, nil, fmt.Errorf("uplink.nts.ca: no certificate")
	}
	return pool, certs, nil
}

func decodeNTS(d *decoder, n *yaml.Node, path string) *NTS {
	f := d.fields(n, path, "servers", "ca")
	if f == nil {
		return nil
	}
	d.require(n, path, f, "servers", "ca")
	out := &NTS{}
	if v, ok := f["servers"]; ok {
		out.Servers = decodeNTSServers(d, v, join(path, "servers"))
	}
	if v, ok := f["ca"]; ok {
		out.CA = decodeNTSCA(d, v, join(path, "ca"))
	}
	if len(out.Servers) == 0 || len(out.CA) == 0 {
		// Each problem is reported where it is; an nts section that
		// names no usable server or trust anchor is never half-kept.
		if _, ok := f["servers"]; ok && len(out.Servers) == 0 && !d.failed[join(path, "servers")] {
			d.nodeErrorf(f["servers"], join(path, "servers"), "names no server (remove the nts section for none)")
		}
		return nil
	}
	return out
}

// decodeNTSServers reads uplink.nts.servers: each "host" or "host:port",
// host an IPv4 unicast address or a DNS name (as in uplink.ntp), port
// 1-65535 (default 4460), no duplicates, at most MaxNTPServers.
func decodeNTSServers(d *decoder, v *yaml.Node, path string) []string {
	return decodeTimeServers(d, v, path, "NTS-KE server", func(it *yaml.Node, ip, s string) (string, bool) {
		h, port := s, DefaultNTSPort
		if strings.Contains(s, ":") {
			hh, ps, err := net.SplitHostPort(s)
			p, perr := strconv.Atoi(ps)
			if err != nil || perr != nil || p < 1 || p > 65535 || ps[0] == '0' {
				d.nodeErrorf(it, ip, "bad NTS-KE server %q (want host or host:port, an IPv4 address or a DNS name, port 1-65535; default %d)", s, DefaultNTSPort)
				return "", false
			}
			h, port = hh, p
		}
		host, ok := timeHost(d, it, ip, h, "NTS-KE server", "want an IPv4 address or a DNS name, optionally :port")
		if !ok {
			return "", false
		}
		return net.JoinHostPort(host, strconv.Itoa(port)), true
	})
}

// decodeNTSCA reads uplink.nts.ca: PEM CERTIFICATE blocks and nothing
// else, each a CA certificate (basicConstraints CA:TRUE, and allowed to
// sign certificates if it restricts its key usage), no duplicates, at
// most MaxNTSCAs. An error names the line of the block's BEGIN line when
// the PEM is a literal block (ca: |).
func decodeNTSCA(d *decoder, v *yaml.Node, path string) [][]byte {
	s, ok := d.str(v, path)
	if !ok {
		return nil
	}
	// line of the i-th text line of the value: a literal or folded block
	// starts on the line after its indicator; any other scalar is on
	// one line as far as errors go.
	lineOf := func(off int) int {
		if v.Style&(yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
			return v.Line
		}
		return v.Line + 1 + strings.Count(s[:off], "\n")
	}
	rest := []byte(s)
	var out [][]byte
	seen := map[string]int{}
	ok = true
	for k := 1; ; k++ {
		off := len(s) - len(rest)
		at := bytes.Index(rest, []byte("-----BEGIN"))
		if at < 0 {
			if len(bytes.TrimSpace(rest)) > 0 {
				what := fmt.Sprintf("text after certificate %d", k-1)
				if k == 1 {
					what = "not PEM"
				}
				d.errorf(lineOf(off), path, "%s (want -----BEGIN CERTIFICATE----- ... -----END CERTIFICATE----- blocks and nothing else)", what)
				ok = false
			}
			break
		}
		if len(bytes.TrimSpace(rest[:at])) > 0 {
			d.errorf(lineOf(off), path, "text before certificate %d is not PEM", k)
			ok = false
		}
		off += at
		b, next := pem.Decode(rest[at:])
		if b == nil {
			d.errorf(lineOf(off), path, "certificate %d: bad PEM block (no matching -----END line, or bad base64)", k)
			ok = false
			break
		}
		rest = next
		if b.Type != "CERTIFICATE" {
			d.errorf(lineOf(off), path, "certificate %d: a PEM %q block, not a CERTIFICATE (the CA's certificate, never a key)", k, b.Type)
			ok = false
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			d.errorf(lineOf(off), path, "certificate %d: %v", k, err)
			ok = false
			continue
		}
		switch {
		case !c.BasicConstraintsValid || !c.IsCA:
			d.errorf(lineOf(off), path, "certificate %d (%s) is not a CA certificate (no basicConstraints CA:TRUE): name the CA that signed the servers' certificates", k, c.Subject)
			ok = false
			continue
		case c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0:
			d.errorf(lineOf(off), path, "certificate %d (%s) may not sign certificates (its keyUsage lacks keyCertSign)", k, c.Subject)
			ok = false
			continue
		}
		if j, dup := seen[string(c.Raw)]; dup {
			d.errorf(lineOf(off), path, "certificate %d (%s) is certificate %d again", k, c.Subject, j)
			ok = false
			continue
		}
		seen[string(c.Raw)] = k
		out = append(out, c.Raw)
	}
	switch {
	case !ok:
		return nil
	case len(out) == 0:
		d.nodeErrorf(v, path, "no certificate (want the CA's certificate in PEM: -----BEGIN CERTIFICATE----- ...)")
		return nil
	case len(out) > MaxNTSCAs:
		d.nodeErrorf(v, path, "%d certificates; at most %d", len(out), MaxNTSCAs)
		return nil
	}
	return out
}

// validateNTS checks the trust anchors against the time the site file is
// checked: an expired CA (or one not valid yet) would make every key
// exchange fail once the gate's clock is right.
func validateNTS(v *validator, n *NTS) {
	_, certs, err := n.CAPool()
	if err != nil {
		v.errorf("uplink.nts.ca", "%v", err)
		return
	}
	for i, c := range certs {
		switch {
		case v.now.After(c.NotAfter):
			v.errorf("uplink.nts.ca", "certificate %d (%s) expired at %s (now %s)", i+1, c.Subject, c.NotAfter.UTC().Format("2006-01-02T15:04:05Z"), v.now.UTC().Format("2006-01-02T15:04:05Z"))
		case v.now.Before(c.NotBefore):
			v.errorf("uplink.nts.ca", "certificate %d (%s) is not valid before %s (now %s)", i+1, c.Subject, c.NotBefore.UTC().Format("2006-01-02T15:04:05Z"), v.now.UTC().Format("2006-01-02T15:04:05Z"))
		}
	}
}
