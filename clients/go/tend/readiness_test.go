package tend_test

// Readiness probes through the Go client: start a server with a TCP probe and wait until it
// accepts; a process that exits first is FAILED with its exit and output.

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/tend-dev/tend/clients/go/tendv1"
)

func TestWaitReady(t *testing.T) {
	d := startDaemon(t)
	ctx := testCtx(t)
	c := d.client(t)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	spec := sh(fmt.Sprintf("sleep 0.3; exec python3 -m http.server %d --bind 127.0.0.1", port))
	spec.Readiness = &tendv1.ReadinessProbe{
		Check:      &tendv1.ReadinessProbe_Tcp{Tcp: &tendv1.TcpProbe{Port: uint32(port)}},
		IntervalMs: 50,
	}
	started, err := c.Start(ctx, &tendv1.StartRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	id := started.GetProcess().GetId()
	defer c.Remove(ctx, &tendv1.RemoveRequest{Id: id, Force: true})
	r, err := c.WaitReady(ctx, &tendv1.WaitReadyRequest{Id: id, TimeoutMs: 20000})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetResult() != tendv1.WaitReadyResult_WAIT_READY_RESULT_READY {
		t.Fatalf("WaitReady = %v, want READY", r)
	}
	if ms := r.GetProcess().GetReadiness().GetReadyAfterMs(); ms < 300 {
		t.Errorf("ready after %d ms, before the server could listen", ms)
	}
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("ready, but the port does not accept: %v", err)
	}
	conn.Close()

	spec = sh("echo 'address in use' >&2; exit 2")
	spec.Readiness = &tendv1.ReadinessProbe{
		Check: &tendv1.ReadinessProbe_Log{Log: &tendv1.LogProbe{Pattern: "listening"}},
	}
	started, err = c.Start(ctx, &tendv1.StartRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	r, err = c.WaitReady(ctx, &tendv1.WaitReadyRequest{Id: started.GetProcess().GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetResult() != tendv1.WaitReadyResult_WAIT_READY_RESULT_FAILED {
		t.Fatalf("WaitReady = %v, want FAILED", r)
	}
	if code := r.GetProcess().GetExit().GetExitCode(); code != 2 {
		t.Errorf("exit code %d, want 2", code)
	}
	var stderr string
	for _, o := range r.GetOutput() {
		if o.GetStream() == tendv1.Stream_STREAM_STDERR {
			stderr = o.GetText()
		}
	}
	if !strings.Contains(stderr, "address in use") {
		t.Errorf("stderr %q lacks what the process wrote", stderr)
	}
}
