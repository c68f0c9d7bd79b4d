package tend_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tend-dev/tend/clients/go/tend"
	"github.com/tend-dev/tend/clients/go/tendv1"
)

// tlsDaemon starts a daemon with a TLS listener on loopback; its address and the
// generated certificate's file, fingerprint and the token.
func tlsDaemon(t *testing.T, args ...string) (d *daemon, addr, cert, fingerprint, token string) {
	t.Helper()
	addr = fmt.Sprintf("tls://127.0.0.1:%d", freePort(t))
	d = startDaemon(t, append([]string{"--listen", addr}, args...)...)
	cert = filepath.Join(d.dir, tend.GeneratedCertName)
	pemBytes, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	fingerprint = fmt.Sprintf("sha256:%x", sha256.Sum256(block.Bytes))
	tok, err := os.ReadFile(filepath.Join(d.dir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	return d, addr, cert, fingerprint, strings.TrimSpace(string(tok))
}

// listOver dials addr with opts and calls List once.
func listOver(t *testing.T, addr string, opts ...tend.Option) error {
	ctx := testCtx(t)
	conn, err := tend.Dial(ctx, addr, opts...)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = tendv1.NewProcessServiceClient(conn).List(ctx, &tendv1.ListRequest{})
	return err
}

func TestTLSByCAOrFingerprint(t *testing.T) {
	_, addr, cert, fp, token := tlsDaemon(t)
	t.Setenv(tend.EnvStateDir, t.TempDir()) // no generated certificate to fall back on
	t.Setenv(tend.EnvTLSCA, "")
	t.Setenv(tend.EnvTLSFingerprint, "")
	if err := listOver(t, addr, tend.WithToken(token), tend.WithTLSCA(cert)); err != nil {
		t.Errorf("by CA: %v", err)
	}
	if err := listOver(t, addr, tend.WithToken(token), tend.WithTLSFingerprint(fp)); err != nil {
		t.Errorf("by fingerprint: %v", err)
	}
	t.Setenv(tend.EnvTLSFingerprint, strings.ToUpper(fp))
	if err := listOver(t, addr, tend.WithToken(token)); err != nil {
		t.Errorf("by TEND_TLS_FINGERPRINT: %v", err)
	}
	t.Setenv(tend.EnvTLSFingerprint, "")
	t.Setenv(tend.EnvTLSCA, cert)
	if err := listOver(t, addr, tend.WithToken(token)); err != nil {
		t.Errorf("by TEND_TLS_CA: %v", err)
	}
	// The token is still required.
	if err := listOver(t, addr, tend.WithToken("")); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no token: %v, want Unauthenticated", err)
	}
	t.Setenv(tend.EnvTLSCA, "")

	// A wrong fingerprint or CA fails the handshake: the call is never sent.
	wrong := "sha256:" + strings.Repeat("00", 32)
	err := listOver(t, addr, tend.WithToken(token), tend.WithTLSFingerprint(wrong))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "not the pinned") {
		t.Errorf("wrong fingerprint: %v, want Unavailable saying it is not the pinned one", err)
	}
	otherCA, _, _ := makeCA(t, "another CA")
	err = listOver(t, addr, tend.WithToken(token), tend.WithTLSCA(otherCA))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("another CA: %v, want Unavailable about the certificate", err)
	}
	// Neither CA nor fingerprint, and no local daemon's certificate: says what to give.
	err = listOver(t, addr, tend.WithToken(token))
	if err == nil || !strings.Contains(err.Error(), "TEND_TLS_FINGERPRINT") {
		t.Errorf("no CA nor fingerprint: %v", err)
	}
}

func TestTLSClientCertificate(t *testing.T) {
	caFile, caCert, caKey := makeCA(t, "tend clients")
	certFile, keyFile := makeClientCert(t, "alice", caCert, caKey)
	_, otherCert, otherKey := makeCA(t, "not the clients' CA")
	badCert, badKey := makeClientCert(t, "mallory", otherCert, otherKey)
	_, addr, cert, _, token := tlsDaemon(t, "--tls-client-ca", caFile)

	if err := listOver(t, addr, tend.WithToken(""), tend.WithTLSCA(cert), tend.WithTLSClientCert(certFile, keyFile)); err != nil {
		t.Errorf("client certificate, no token: %v", err)
	}
	if err := listOver(t, addr, tend.WithToken(""), tend.WithTLSCA(cert)); status.Code(err) != codes.Unauthenticated {
		t.Errorf("neither certificate nor token: %v, want Unauthenticated", err)
	}
	if err := listOver(t, addr, tend.WithToken(token), tend.WithTLSCA(cert)); err != nil {
		t.Errorf("token, no certificate: %v", err)
	}

	// Where a certificate is required, another CA's is refused by the handshake, token or
	// not. (crypto/tls only presents a certificate of a CA the daemon names, so without
	// --tls-require-client-cert it would have connected without one, and needed the token.)
	_, addr, cert, _, token = tlsDaemon(t, "--tls-client-ca", caFile, "--tls-require-client-cert")
	if err := listOver(t, addr, tend.WithToken(""), tend.WithTLSCA(cert), tend.WithTLSClientCert(certFile, keyFile)); err != nil {
		t.Errorf("required client certificate: %v", err)
	}
	err := listOver(t, addr, tend.WithToken(token), tend.WithTLSCA(cert), tend.WithTLSClientCert(badCert, badKey))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("another CA's client certificate: %v, want Unavailable (refused by the handshake)", err)
	}
	if err := listOver(t, addr, tend.WithToken(token), tend.WithTLSCA(cert)); status.Code(err) != codes.Unavailable {
		t.Errorf("the token without a certificate: %v, want Unavailable (refused by the handshake)", err)
	}
}

// makeCA writes a new CA certificate; its file, certificate and key.
func makeCA(t *testing.T, name string) (string, *x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ca.pem")
	writePEM(t, file, "CERTIFICATE", der)
	return file, c, key
}

// makeClientCert writes a client certificate for cn signed by ca; its files.
func makeClientCert(t *testing.T, cn string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func writePEM(t *testing.T, file, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
