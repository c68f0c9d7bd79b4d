package tend_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tend-dev/tend/clients/go/tend"
)

func TestParseAddr(t *testing.T) {
	t.Setenv(tend.EnvAddr, "")
	t.Setenv(tend.EnvStateDir, "/state")
	cases := []struct {
		addr, network, address, err string
	}{
		{addr: "unix:///run/tend/tend.sock", network: "unix", address: "/run/tend/tend.sock"},
		{addr: "unix:/run/tend.sock", network: "unix", address: "/run/tend.sock"},
		{addr: "unix:rel/tend.sock", network: "unix", address: "rel/tend.sock"},
		{addr: "/run/tend.sock", network: "unix", address: "/run/tend.sock"},
		{addr: "run/tend.sock", network: "unix", address: "run/tend.sock"},
		{addr: "tcp://127.0.0.1:7070", network: "tcp", address: "127.0.0.1:7070"},
		{addr: "tcp://[::1]:7070/", network: "tcp", address: "[::1]:7070"},
		{addr: "", network: "unix", address: "/state/tend.sock"},
		{addr: "tcp://127.0.0.1", err: "want tcp://host:port"},
		{addr: "unix://", err: "empty socket path"},
		{addr: "tls://tend.example:7443/", network: "tls", address: "tend.example:7443"},
		{addr: "tls://tend.example", err: "want tls://host:port"},
		{addr: "http://localhost:80", err: "want unix:///path/to/tend.sock, tls://host:port or tcp://host:port"},
	}
	for _, c := range cases {
		network, address, err := tend.ParseAddr(c.addr)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseAddr(%q) error = %v, want one containing %q", c.addr, err, c.err)
			}
			continue
		}
		if err != nil || network != c.network || address != c.address {
			t.Errorf("ParseAddr(%q) = %q, %q, %v; want %q, %q", c.addr, network, address, err, c.network, c.address)
		}
	}
}

func TestParseAddrFromEnv(t *testing.T) {
	t.Setenv(tend.EnvAddr, "tcp://localhost:9")
	network, address, err := tend.ParseAddr("")
	if err != nil || network != "tcp" || address != "localhost:9" {
		t.Fatalf("ParseAddr(\"\") with TEND_ADDR = %q, %q, %v", network, address, err)
	}
	// An explicit address wins over TEND_ADDR.
	if _, address, _ := tend.ParseAddr("unix:///x.sock"); address != "/x.sock" {
		t.Fatalf("explicit address lost to TEND_ADDR: %q", address)
	}
}

func TestDefaultSocketPath(t *testing.T) {
	cases := []struct{ stateDir, xdg, home, want string }{
		{stateDir: "/s", xdg: "/x", home: "/h", want: "/s/tend.sock"},
		{stateDir: "", xdg: "/run/user/1000", home: "/h", want: "/run/user/1000/tend/tend.sock"},
		{stateDir: "", xdg: "", home: "/home/me", want: "/home/me/.tend/tend.sock"},
		{stateDir: "", xdg: "", home: "", want: "/.tend/tend.sock"},
	}
	for _, c := range cases {
		t.Setenv(tend.EnvStateDir, c.stateDir)
		t.Setenv("XDG_RUNTIME_DIR", c.xdg)
		t.Setenv("HOME", c.home)
		got, err := tend.DefaultSocketPath()
		if err != nil || got != c.want {
			t.Errorf("DefaultSocketPath() with %+v = %q, %v; want %q", c, got, err, c.want)
		}
	}
}

func TestDialRejectsBadAddress(t *testing.T) {
	if _, err := tend.Dial(context.Background(), "ftp://x"); err == nil {
		t.Fatal("Dial accepted ftp://x")
	}
}
