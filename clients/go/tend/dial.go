// Package tend dials the tend daemon. It understands the daemon's address forms
// (unix:///path/to/tend.sock, tls://host:port, tcp://host:port), the TEND_ADDR,
// TEND_TOKEN and TEND_TLS_* environment variables and the default socket location,
// verifies a tls:// daemon (by CA or pinned fingerprint), and attaches the bearer
// token to every call. The service stubs live in package tendv1:
//
//	conn, err := tend.Dial(ctx, "")            // TEND_ADDR, else the default socket
//	if err != nil { ... }
//	defer conn.Close()
//	procs := tendv1.NewProcessServiceClient(conn)
//	agents := tendv1.NewAgentServiceClient(conn)   // the same connection serves them all
//	runner := tendv1.NewRunnerServiceClient(conn)  // environments: native, Docker, Nix
//	loader := tendv1.NewLoaderServiceClient(conn)  // plugins; ToPlugin calls one through tend
package tend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Environment variables shared with the daemon and the other clients.
const (
	// EnvAddr selects the daemon: unix:///path/to/tend.sock, tls://host:port or
	// tcp://host:port.
	EnvAddr = "TEND_ADDR"
	// EnvToken is the bearer token sent with every call (needed over TCP).
	EnvToken = "TEND_TOKEN"
	// EnvStateDir is the daemon's state directory; the socket is tend.sock in it.
	EnvStateDir = "TEND_STATE_DIR"
)

// SocketName is the file name of the daemon's unix socket in its state directory.
const SocketName = "tend.sock"

// Option configures Dial.
type Option func(*options)

type options struct {
	token    string
	tokenSet bool
	tls      tlsOptions
	dialOpts []grpc.DialOption
}

// WithToken sets the bearer token sent as "authorization: Bearer <token>" with every
// call, instead of TEND_TOKEN. An empty token sends none, whatever TEND_TOKEN says.
func WithToken(token string) Option {
	return func(o *options) { o.token, o.tokenSet = token, true }
}

// WithDialOptions adds gRPC dial options (for example grpc.WithBlock()). They are
// applied after Dial's own, so they can override them.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOpts = append(o.dialOpts, opts...) }
}

// DefaultStateDir is the daemon's state directory, computed as the daemon does:
// $TEND_STATE_DIR, else $XDG_RUNTIME_DIR/tend, else ~/.tend. Empty variables count
// as unset.
func DefaultStateDir() (string, error) {
	if dir := os.Getenv(EnvStateDir); dir != "" {
		return dir, nil
	}
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		return filepath.Join(dir, "tend"), nil
	}
	home := os.Getenv("HOME")
	if home == "" {
		home = "/" // as the daemon does
	}
	return filepath.Join(home, ".tend"), nil
}

// DefaultSocketPath is the daemon's default unix socket: DefaultStateDir()/tend.sock.
func DefaultSocketPath() (string, error) {
	dir, err := DefaultStateDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, SocketName), nil
}

// ParseAddr resolves a daemon address into a network ("unix", "tls" or "tcp") and
// an address (for net.Dial; "tls" is TCP with TLS). Accepted forms, as the tend CLI
// accepts them: unix:///abs/path, tls://host:port, tcp://host:port, and a bare socket
// path (anything without
// "://"); also gRPC's unix:path. An empty addr means $TEND_ADDR, and when that is
// empty too, the default socket (DefaultSocketPath).
func ParseAddr(addr string) (network, address string, err error) {
	if addr == "" {
		addr = os.Getenv(EnvAddr)
	}
	if addr == "" {
		path, err := DefaultSocketPath()
		if err != nil {
			return "", "", err
		}
		return "unix", path, nil
	}
	switch {
	case strings.HasPrefix(addr, "unix://"):
		address = strings.TrimPrefix(addr, "unix://")
		network = "unix"
	case strings.HasPrefix(addr, "unix:"):
		address = strings.TrimPrefix(addr, "unix:")
		network = "unix"
	case strings.HasPrefix(addr, "tcp://"):
		address = strings.TrimSuffix(strings.TrimPrefix(addr, "tcp://"), "/")
		if _, _, err := net.SplitHostPort(address); err != nil {
			return "", "", fmt.Errorf("tend: address %q: want tcp://host:port: %w", addr, err)
		}
		return "tcp", address, nil
	case strings.HasPrefix(addr, "tls://"):
		address = strings.TrimSuffix(strings.TrimPrefix(addr, "tls://"), "/")
		if _, _, err := net.SplitHostPort(address); err != nil {
			return "", "", fmt.Errorf("tend: address %q: want tls://host:port: %w", addr, err)
		}
		return "tls", address, nil
	case strings.Contains(addr, "://"):
		return "", "", fmt.Errorf("tend: address %q: want unix:///path/to/tend.sock, tls://host:port or tcp://host:port", addr)
	default:
		address = addr
		network = "unix"
	}
	if address == "" {
		return "", "", fmt.Errorf("tend: address %q: empty socket path", addr)
	}
	return network, address, nil
}

// Dial connects to the daemon at addr (see ParseAddr; empty means TEND_ADDR, then
// the default socket). The token from WithToken, else TEND_TOKEN, is attached to
// every call. A tls:// daemon is verified as WithTLSCA / WithTLSFingerprint (or
// TEND_TLS_CA / TEND_TLS_FINGERPRINT) say, in the handshake, before any call is sent. Like grpc.DialContext, it does not wait for the connection unless
// given grpc.WithBlock() through WithDialOptions; the first call fails with
// codes.Unavailable when nothing listens.
func Dial(ctx context.Context, addr string, opts ...Option) (*grpc.ClientConn, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	network, address, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	token := o.token
	if !o.tokenSet {
		token = os.Getenv(EnvToken)
	}

	netw := network
	if netw == "tls" {
		netw = "tcp"
	}
	dialer := func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, netw, address)
	}
	// "passthrough" hands the target to the dialer untouched, in every grpc-go
	// version (newer ones default to the dns resolver). For a unix socket the target
	// only names the HTTP/2 :authority, which must be a host, not a path: use
	// "localhost", as grpc-go's own unix resolver does.
	target := "passthrough:///" + address
	if network == "unix" {
		target = "passthrough:///localhost"
	}
	dialOpts := []grpc.DialOption{grpc.WithContextDialer(dialer)}
	if network == "tls" {
		host, _, _ := net.SplitHostPort(address)
		cfg, err := o.tls.tlsConfig(host)
		if err != nil {
			return nil, err
		}
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	} else {
		// Plaintext: a 0600 unix socket, or TCP on loopback (the daemon refuses
		// plaintext elsewhere unless told otherwise), guarded by the bearer token.
		// WithInsecure, not credentials/insecure, so this builds with grpc-go 1.33
		// (Debian 12).
		dialOpts = append(dialOpts, grpc.WithInsecure()) //nolint:staticcheck // see above
	}
	if token != "" {
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(bearerToken(token)))
	}
	dialOpts = append(dialOpts, o.dialOpts...)
	conn, err := grpc.DialContext(ctx, target, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("tend: dial %s %s: %w", network, address, err)
	}
	return conn, nil
}

// bearerToken sends "authorization: Bearer <token>" with every call.
type bearerToken string

func (t bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if t == "" {
		return nil, errors.New("tend: empty bearer token")
	}
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

// RequireTransportSecurity is false: the token also goes over the unix socket (protected
// by its file mode) and plaintext TCP on loopback.
func (bearerToken) RequireTransportSecurity() bool { return false }
