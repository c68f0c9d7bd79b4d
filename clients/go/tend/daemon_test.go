package tend_test

// The fixture: the real tend binary, started on a temporary state directory, polled
// through the health service until it answers (bounded, never a fixed sleep), and
// stopped with SIGTERM (SIGKILL after a grace period).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tend-dev/tend/clients/go/tend"
	"github.com/tend-dev/tend/clients/go/tendv1"
)

const (
	readyTimeout = 20 * time.Second
	stopGrace    = 5 * time.Second
)

// tendBin is $TEND_BIN, else ../../target/debug/tend relative to the module root.
func tendBin() (string, error) {
	if bin := os.Getenv("TEND_BIN"); bin != "" {
		return filepath.Abs(bin)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	// Resolve symlinks first: the offline GOPATH build reaches the module through one,
	// and ".." must climb the real tree.
	if wd, err = filepath.EvalSymlinks(wd); err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "..", "..", "target", "debug", "tend"), nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no go.mod above %s", wd)
		}
	}
}

// requireBin skips (or, under CI=true, fails) when the daemon binary is missing.
func requireBin(t *testing.T) string {
	t.Helper()
	bin, err := tendBin()
	if err == nil {
		_, err = os.Stat(bin)
	}
	if err != nil {
		msg := fmt.Sprintf("tend binary not available (%v): run `cargo build` or set TEND_BIN", err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

type daemon struct {
	dir    string
	sock   string
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
	err    error // set when exited is closed
}

// syncBuffer collects the daemon's stdout and stderr for failure messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startDaemon runs `tend serve <args>` on a fresh state directory and waits until its
// health service answers on the unix socket. It is stopped when the test ends.
func startDaemon(t *testing.T, args ...string) *daemon {
	t.Helper()
	bin := requireBin(t)
	// Short path: a unix socket path is limited to 107 bytes.
	dir, err := os.MkdirTemp("", "tend-go-")
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{dir: dir, sock: filepath.Join(dir, tend.SocketName), out: &syncBuffer{}, exited: make(chan struct{})}
	d.cmd = exec.Command(bin, append([]string{"serve"}, args...)...)
	d.cmd.Env = append(cleanEnv(), tend.EnvStateDir+"="+dir, "RUST_LOG=info")
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() { d.stop(t) })

	if err := d.waitReady(); err != nil {
		t.Fatalf("daemon not ready: %v\n--- daemon output ---\n%s", err, d.out.String())
	}
	return d
}

func (d *daemon) waitReady() error {
	deadline := time.Now().Add(readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-d.exited:
			return fmt.Errorf("daemon exited early: %v", d.err)
		default:
		}
		if _, err := os.Stat(d.sock); err != nil {
			last = err
		} else {
			last = checkHealth(d.sock)
			if last == nil {
				return nil
			}
		}
		select {
		case <-d.exited:
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("no healthy answer on %s within %v: %v", d.sock, readyTimeout, last)
}

func checkHealth(sock string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn, err := tend.Dial(ctx, "unix://"+sock, tend.WithToken(""))
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := grpc_health_v1.NewHealthClient(conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if resp.Status != grpc_health_v1.HealthCheckResponse_SERVING {
		return fmt.Errorf("health status %v", resp.Status)
	}
	return nil
}

func (d *daemon) stop(t *testing.T) {
	select {
	case <-d.exited:
	default:
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(stopGrace):
			t.Errorf("daemon ignored SIGTERM for %v; killing it", stopGrace)
			_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.exited
		}
	}
	if t.Failed() {
		t.Logf("--- daemon output ---\n%s", d.out.String())
	}
	os.RemoveAll(d.dir)
}

// addr is the daemon's unix address in TEND_ADDR form.
func (d *daemon) addr() string { return "unix://" + d.sock }

// client dials the daemon's unix socket and returns a ProcessService client.
func (d *daemon) client(t *testing.T) tendv1.ProcessServiceClient {
	t.Helper()
	conn, err := tend.Dial(context.Background(), d.addr(), tend.WithToken(""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return tendv1.NewProcessServiceClient(conn)
}

// cleanEnv is the test's environment without the client variables, so a developer's
// TEND_ADDR or TEND_TOKEN cannot leak into the daemon under test.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		switch {
		case hasKey(kv, tend.EnvAddr), hasKey(kv, tend.EnvToken), hasKey(kv, tend.EnvStateDir):
		default:
			env = append(env, kv)
		}
	}
	return env
}

func hasKey(kv, key string) bool { return len(kv) > len(key) && kv[:len(key)+1] == key+"=" }

// freePort asks the kernel for a free loopback port. Another process could take it
// before the daemon binds it; the daemon then fails to start, loudly.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// testCtx bounds every test's calls.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var errNoExit = errors.New("stream ended without an exited event")

// events is what a Run/Connect/Attach stream delivered.
type events struct {
	started *tendv1.ProcessInfo
	data    map[tendv1.Stream]*bytes.Buffer
	first   map[tendv1.Stream]uint64 // offset of the first data event per stream
	gaps    []*tendv1.GapEvent
	exited  *tendv1.ExitStatus
}

// collect reads a stream of ProcessEvents until it ends, checking that exited is last.
func collect(recv func() (*tendv1.ProcessEvent, error)) (*events, error) {
	ev := &events{data: map[tendv1.Stream]*bytes.Buffer{}, first: map[tendv1.Stream]uint64{}}
	for {
		e, err := recv()
		if err != nil {
			if isEOF(err) {
				if ev.exited == nil {
					return ev, errNoExit
				}
				return ev, nil
			}
			return ev, err
		}
		if ev.exited != nil {
			return ev, fmt.Errorf("event after exited: %v", e)
		}
		switch k := e.Kind.(type) {
		case *tendv1.ProcessEvent_Started:
			ev.started = k.Started
		case *tendv1.ProcessEvent_Data:
			b := ev.data[k.Data.Stream]
			if b == nil {
				b = &bytes.Buffer{}
				ev.data[k.Data.Stream] = b
				ev.first[k.Data.Stream] = k.Data.Offset
			}
			b.Write(k.Data.Data)
		case *tendv1.ProcessEvent_Gap:
			ev.gaps = append(ev.gaps, k.Gap)
		case *tendv1.ProcessEvent_Exited:
			ev.exited = k.Exited
		}
	}
}

func (e *events) text(s tendv1.Stream) string {
	if b := e.data[s]; b != nil {
		return b.String()
	}
	return ""
}
