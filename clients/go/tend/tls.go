package tend

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Environment variables for tls:// addresses, shared with the CLI and the Python client.
const (
	// EnvTLSCA is the CA file (PEM) the daemon's certificate must chain to; for the
	// certificate the daemon generates, that certificate itself (<state dir>/tls-cert.pem).
	EnvTLSCA = "TEND_TLS_CA"
	// EnvTLSFingerprint is the daemon certificate's SHA-256 fingerprint to pin
	// ("sha256:<hex>", as `tend serve` logs it; colons and case do not matter).
	EnvTLSFingerprint = "TEND_TLS_FINGERPRINT"
	// EnvTLSClientCert and EnvTLSClientKey are a client certificate and its key (PEM)
	// for a daemon started with --tls-client-ca.
	EnvTLSClientCert = "TEND_TLS_CLIENT_CERT"
	EnvTLSClientKey  = "TEND_TLS_CLIENT_KEY"
)

// GeneratedCertName is the file name of the certificate the daemon generates in its state
// directory for its TLS listeners.
const GeneratedCertName = "tls-cert.pem"

type tlsOptions struct {
	ca, fingerprint, cert, key string
	caSet, fpSet, certSet      bool
}

// WithTLSCA verifies a tls:// daemon against the CA certificates in file (PEM), instead
// of TEND_TLS_CA.
func WithTLSCA(file string) Option {
	return func(o *options) { o.tls.ca, o.tls.caSet = file, true }
}

// WithTLSFingerprint pins a tls:// daemon's certificate by its SHA-256 fingerprint
// ("sha256:<hex>"), instead of TEND_TLS_FINGERPRINT. Names and dates are then not checked,
// as ssh checks a host key; with WithTLSCA too, both must hold.
func WithTLSFingerprint(fingerprint string) Option {
	return func(o *options) { o.tls.fingerprint, o.tls.fpSet = fingerprint, true }
}

// WithTLSClientCert presents a client certificate (PEM files), instead of
// TEND_TLS_CLIENT_CERT and TEND_TLS_CLIENT_KEY; a daemon with --tls-client-ca then
// needs no token.
func WithTLSClientCert(certFile, keyFile string) Option {
	return func(o *options) { o.tls.cert, o.tls.key, o.tls.certSet = certFile, keyFile, true }
}

// ParseFingerprint reads "sha256:AB:CD:...", "sha256:abcd..." or bare hex.
func ParseFingerprint(s string) ([]byte, error) {
	t := strings.TrimSpace(s)
	if len(t) >= 7 && strings.EqualFold(t[:7], "sha256:") {
		t = t[7:]
	}
	t = strings.NewReplacer(":", "", " ", "").Replace(t)
	b, err := hex.DecodeString(t)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("tend: TLS fingerprint %q: want sha256: and 64 hex digits, as `tend serve` logs it", s)
	}
	return b, nil
}

// tlsConfig is how Dial verifies the daemon at host: a CA, a pinned fingerprint or both;
// with neither, the local daemon's generated certificate when there is one. There is no
// option to skip the verification.
func (t tlsOptions) tlsConfig(host string) (*tls.Config, error) {
	ca, fp := t.ca, t.fingerprint
	if !t.caSet {
		ca = os.Getenv(EnvTLSCA)
	}
	if !t.fpSet {
		fp = os.Getenv(EnvTLSFingerprint)
	}
	if ca == "" && fp == "" {
		dir, err := DefaultStateDir()
		if err != nil {
			return nil, err
		}
		local := filepath.Join(dir, GeneratedCertName)
		if _, err := os.Stat(local); err != nil {
			return nil, errors.New("tend: tls://: give the daemon's CA (WithTLSCA or TEND_TLS_CA; for a generated certificate, its tls-cert.pem) or its fingerprint (WithTLSFingerprint or TEND_TLS_FINGERPRINT), as `tend serve` logs them")
		}
		ca = local
	}
	cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("tend: TLS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tend: TLS CA %s: no PEM certificate in it", ca)
		}
		cfg.RootCAs = pool
	}
	if fp != "" {
		want, err := ParseFingerprint(fp)
		if err != nil {
			return nil, err
		}
		// Pinned: without a CA, the usual chain and name checks are replaced by this one.
		cfg.InsecureSkipVerify = ca == ""
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("tend: the daemon presented no certificate")
			}
			got := sha256.Sum256(raw[0])
			if !bytes.Equal(got[:], want) {
				return fmt.Errorf("tend: the daemon's certificate is sha256:%x, not the pinned sha256:%x: this is not the daemon you pinned, or its certificate changed", got, want)
			}
			return nil
		}
	}
	certFile, keyFile := t.cert, t.key
	if !t.certSet {
		certFile, keyFile = os.Getenv(EnvTLSClientCert), os.Getenv(EnvTLSClientKey)
	}
	if certFile != "" || keyFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("tend: TLS client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
