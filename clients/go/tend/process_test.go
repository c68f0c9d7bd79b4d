package tend_test

// ProcessService through the Go client, against the real daemon.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tend-dev/tend/clients/go/tend"
	"github.com/tend-dev/tend/clients/go/tendv1"
)

func isEOF(err error) bool { return errors.Is(err, io.EOF) }

func sh(script string) *tendv1.ProcessSpec {
	return &tendv1.ProcessSpec{Argv: []string{"sh", "-c", script}}
}

func TestRunStreamsToExit(t *testing.T) {
	d := startDaemon(t)
	ctx := testCtx(t)
	stream, err := d.client(t).Run(ctx, &tendv1.RunRequest{Spec: sh("printf hello; printf oops >&2; exit 3")})
	if err != nil {
		t.Fatal(err)
	}
	first := true
	ev, err := collect(func() (*tendv1.ProcessEvent, error) {
		r, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		if first && r.GetEvent().GetStarted() == nil {
			return nil, fmt.Errorf("first event is not started: %v", r)
		}
		first = false
		return r.GetEvent(), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ev.started.GetId() == "" || ev.started.GetPid() == 0 {
		t.Errorf("started event lacks id or pid: %v", ev.started)
	}
	if got := ev.text(tendv1.Stream_STREAM_STDOUT); got != "hello" {
		t.Errorf("stdout = %q, want %q", got, "hello")
	}
	if got := ev.text(tendv1.Stream_STREAM_STDERR); got != "oops" {
		t.Errorf("stderr = %q, want %q", got, "oops")
	}
	if ev.exited.ExitCode == nil || ev.exited.GetExitCode() != 3 {
		t.Errorf("exit = %v, want exit code 3", ev.exited)
	}
	if ev.exited.Signal != nil {
		t.Errorf("exit has a signal: %v", ev.exited)
	}
}

func TestStartConnectReplayFromOffset(t *testing.T) {
	d := startDaemon(t)
	ctx := testCtx(t)
	c := d.client(t)

	// Foreground Start: returns once the process exited.
	started, err := c.Start(ctx, &tendv1.StartRequest{Spec: sh("printf 0123456789"), WaitTimeoutMs: 20000})
	if err != nil {
		t.Fatal(err)
	}
	if started.TimedOut || started.Process.GetState() != tendv1.ProcessState_PROCESS_STATE_EXITED {
		t.Fatalf("foreground Start did not wait for exit: %v", started)
	}
	id := started.Process.GetId()

	conn, err := c.Connect(ctx, &tendv1.ConnectRequest{Id: id, FromOffset: 4, Stream: tendv1.Stream_STREAM_STDOUT})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := collect(func() (*tendv1.ProcessEvent, error) {
		r, err := conn.Recv()
		return r.GetEvent(), err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := ev.text(tendv1.Stream_STREAM_STDOUT); got != "456789" {
		t.Errorf("replay from 4 = %q, want %q", got, "456789")
	}
	if off := ev.first[tendv1.Stream_STREAM_STDOUT]; off != 4 {
		t.Errorf("first data offset = %d, want 4", off)
	}
	if ev.exited.GetExitCode() != 0 {
		t.Errorf("exit = %v", ev.exited)
	}

	// Background Start, then Connect while it runs: replay, then follow to the exit.
	// The child blocks on its stdin until CloseInput, so the Connect surely begins
	// while it is running.
	bg, err := c.Start(ctx, &tendv1.StartRequest{Spec: &tendv1.ProcessSpec{
		Argv: []string{"sh", "-c", "printf abc; cat >/dev/null; printf def"}, Stdin: true,
	}})
	if err != nil {
		t.Fatal(err)
	}
	if bg.Process.GetState() != tendv1.ProcessState_PROCESS_STATE_RUNNING {
		t.Fatalf("background Start: %v", bg)
	}
	follow, err := c.Connect(ctx, &tendv1.ConnectRequest{Id: bg.Process.Id, FromOffset: 1, Stream: tendv1.Stream_STREAM_STDOUT})
	if err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	for got.Len() < 2 { // "bc" replayed
		r, err := follow.Recv()
		if err != nil {
			t.Fatalf("Connect: %v (so far %q)", err, got.String())
		}
		got.Write(r.GetEvent().GetData().GetData())
	}
	if _, err := c.CloseInput(ctx, &tendv1.CloseInputRequest{Id: bg.Process.Id}); err != nil {
		t.Fatal(err)
	}
	ev, err = collect(func() (*tendv1.ProcessEvent, error) {
		r, err := follow.Recv()
		return r.GetEvent(), err
	})
	if err != nil {
		t.Fatal(err)
	}
	if all := got.String() + ev.text(tendv1.Stream_STREAM_STDOUT); all != "bcdef" {
		t.Errorf("follow from 1 = %q, want %q", all, "bcdef")
	}
}

func TestSignal(t *testing.T) {
	d := startDaemon(t)
	ctx := testCtx(t)
	c := d.client(t)
	st, err := c.Start(ctx, &tendv1.StartRequest{Spec: &tendv1.ProcessSpec{Argv: []string{"sleep", "60"}, Name: "sleeper"}})
	if err != nil {
		t.Fatal(err)
	}
	// By name, with the short signal spelling.
	if _, err := c.Signal(ctx, &tendv1.SignalRequest{Id: "sleeper", Signal: "TERM"}); err != nil {
		t.Fatal(err)
	}
	w, err := c.Wait(ctx, &tendv1.WaitRequest{Id: st.Process.Id, TimeoutMs: 10000})
	if err != nil {
		t.Fatal(err)
	}
	if w.TimedOut {
		t.Fatalf("sleep survived SIGTERM: %v", w)
	}
	exit := w.Process.GetExit()
	if exit.Signal == nil || exit.GetSignal() != 15 || exit.SignalName != "SIGTERM" || exit.ExitCode != nil {
		t.Errorf("exit = %v, want signal 15 SIGTERM", exit)
	}

	// Wait with a timeout on a running process says so.
	st, err = c.Start(ctx, &tendv1.StartRequest{Spec: &tendv1.ProcessSpec{Argv: []string{"sleep", "60"}}})
	if err != nil {
		t.Fatal(err)
	}
	w, err = c.Wait(ctx, &tendv1.WaitRequest{Id: st.Process.Id, TimeoutMs: 100})
	if err != nil || !w.TimedOut || w.Process.GetState() != tendv1.ProcessState_PROCESS_STATE_RUNNING {
		t.Fatalf("Wait(100ms) on sleep 60 = %v, %v; want timed out and running", w, err)
	}
	if _, err := c.Signal(ctx, &tendv1.SignalRequest{Id: st.Process.Id, Signal: "9"}); err != nil {
		t.Fatal(err)
	}
	w, err = c.Wait(ctx, &tendv1.WaitRequest{Id: st.Process.Id, TimeoutMs: 10000})
	if err != nil || w.Process.GetExit().GetSignalName() != "SIGKILL" {
		t.Fatalf("after SIGKILL: %v, %v", w, err)
	}
}

func TestOutputHeadTail(t *testing.T) {
	d := startDaemon(t)
	ctx := testCtx(t)
	c := d.client(t)
	var want strings.Builder
	for i := 1; i <= 20000; i++ {
		fmt.Fprintf(&want, "%d\n", i)
	}
	st, err := c.Start(ctx, &tendv1.StartRequest{
		Spec:          &tendv1.ProcessSpec{Argv: []string{"seq", "1", "20000"}},
		WaitTimeoutMs: 20000,
		Output:        &tendv1.OutputOptions{Stream: tendv1.Stream_STREAM_STDOUT, HeadBytes: 64, TailBytes: 64},
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.TimedOut || len(st.Output) != 1 || !st.Output[0].Truncated {
		t.Fatalf("foreground Start output: %v", st)
	}

	out, err := c.Output(ctx, &tendv1.OutputRequest{Id: st.Process.Id, Options: &tendv1.OutputOptions{
		Stream: tendv1.Stream_STREAM_STDOUT, HeadBytes: 100, TailBytes: 100,
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Output) != 1 {
		t.Fatalf("Output for one stream returned %d views", len(out.Output))
	}
	o := out.Output[0]
	if o.Stream != tendv1.Stream_STREAM_STDOUT || o.TotalBytes != uint64(want.Len()) || !o.Truncated {
		t.Errorf("view = stream %v, total %d, truncated %v; want STDOUT, %d, true", o.Stream, o.TotalBytes, o.Truncated, want.Len())
	}
	if !strings.HasPrefix(o.Text, "1\n2\n3\n") || !strings.HasSuffix(o.Text, "19999\n20000\n") {
		t.Errorf("view is not head+tail: %q", o.Text)
	}
	if o.OmittedBytes < uint64(want.Len()-200) || o.OmittedBytes >= uint64(want.Len()) {
		t.Errorf("omitted %d of %d bytes with 100+100 kept", o.OmittedBytes, want.Len())
	}

	// Long lines are cut and counted.
	st, err = c.Start(ctx, &tendv1.StartRequest{
		Spec:          sh("head -c 5000 /dev/zero | tr '\\0' x; echo; echo short"),
		WaitTimeoutMs: 20000,
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err = c.Output(ctx, &tendv1.OutputRequest{Id: st.Process.Id, Options: &tendv1.OutputOptions{
		Stream: tendv1.Stream_STREAM_STDOUT, MaxLineBytes: 100,
	}})
	if err != nil {
		t.Fatal(err)
	}
	o = out.Output[0]
	if o.CutLines != 1 || o.CutLineBytes == 0 || !o.Truncated || !strings.Contains(o.Text, "short") || len(o.Text) > 1000 {
		t.Errorf("long line view: cut %d lines (%d bytes), truncated %v, %d bytes of text", o.CutLines, o.CutLineBytes, o.Truncated, len(o.Text))
	}
}

func TestUnknownIDIsNotFound(t *testing.T) {
	d := startDaemon(t)
	ctx := testCtx(t)
	c := d.client(t)
	check := func(rpc string, err error) {
		t.Helper()
		if status.Code(err) != codes.NotFound {
			t.Errorf("%s(unknown id) = %v, want NotFound", rpc, err)
		}
	}
	_, err := c.Get(ctx, &tendv1.GetRequest{Id: "no-such-process"})
	check("Get", err)
	_, err = c.Signal(ctx, &tendv1.SignalRequest{Id: "no-such-process"})
	check("Signal", err)
	_, err = c.Output(ctx, &tendv1.OutputRequest{Id: "no-such-process"})
	check("Output", err)
	stream, err := c.Connect(ctx, &tendv1.ConnectRequest{Id: "no-such-process"})
	if err == nil {
		_, err = stream.Recv()
	}
	check("Connect", err)
}

func TestTCPWithToken(t *testing.T) {
	port := freePort(t)
	d := startDaemon(t, "--listen", fmt.Sprintf("tcp://127.0.0.1:%d", port), "--token", "s3cret-token-0123456789")
	ctx := testCtx(t)
	addr := fmt.Sprintf("tcp://127.0.0.1:%d", port)

	list := func(opts ...tend.Option) error {
		conn, err := tend.Dial(ctx, addr, opts...)
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = tendv1.NewProcessServiceClient(conn).List(ctx, &tendv1.ListRequest{})
		return err
	}
	if err := list(tend.WithToken("s3cret-token-0123456789")); err != nil {
		t.Fatalf("List over TCP with the token: %v", err)
	}
	t.Setenv(tend.EnvToken, "s3cret-token-0123456789")
	if err := list(); err != nil {
		t.Fatalf("List over TCP with TEND_TOKEN: %v", err)
	}
	if err := list(tend.WithToken("wrong")); status.Code(err) != codes.Unauthenticated {
		t.Errorf("wrong token: %v, want Unauthenticated", err)
	}
	if err := list(tend.WithToken("")); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no token: %v, want Unauthenticated", err)
	}

	// TEND_ADDR selects the daemon when Dial gets no address; a process started over
	// TCP is visible on the unix socket.
	t.Setenv(tend.EnvAddr, addr)
	conn, err := tend.Dial(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st, err := tendv1.NewProcessServiceClient(conn).Start(ctx, &tendv1.StartRequest{Spec: sh("echo over-tcp"), WaitTimeoutMs: 20000})
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.client(t).Get(ctx, &tendv1.GetRequest{Id: st.Process.Id})
	if err != nil || got.Process.GetExit().GetExitCode() != 0 {
		t.Fatalf("Get over unix of a TCP-started process: %v, %v", got, err)
	}
}

func TestDefaultSocketDial(t *testing.T) {
	d := startDaemon(t)
	ctx := testCtx(t)
	// No address and no TEND_ADDR: the socket in TEND_STATE_DIR.
	t.Setenv(tend.EnvAddr, "")
	t.Setenv(tend.EnvStateDir, d.dir)
	if p, _ := tend.DefaultSocketPath(); p != filepath.Join(d.dir, "tend.sock") {
		t.Fatalf("DefaultSocketPath = %q", p)
	}
	conn, err := tend.Dial(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := tendv1.NewProcessServiceClient(conn).List(ctx, &tendv1.ListRequest{}); err != nil {
		t.Fatal(err)
	}
	// The socket is private to its owner.
	if fi, err := os.Stat(d.sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode: %v, %v; want 0600", fi.Mode(), err)
	}
}

func TestAttachPTY(t *testing.T) {
	d := startDaemon(t)
	ctx := testCtx(t)
	c := d.client(t)
	st, err := c.Start(ctx, &tendv1.StartRequest{Spec: &tendv1.ProcessSpec{
		Argv: []string{"sh"}, Pty: &tendv1.PtySize{Rows: 24, Cols: 80}, Env: map[string]string{"PS1": "$ "},
	}})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := c.Attach(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(req *tendv1.AttachRequest) {
		t.Helper()
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	var screen strings.Builder
	readUntil := func(needle string) {
		t.Helper()
		for !strings.Contains(screen.String(), needle) {
			r, err := stream.Recv()
			if err != nil {
				t.Fatalf("waiting for %q: %v; screen: %q", needle, err, screen.String())
			}
			if r.GetEvent().GetExited() != nil {
				t.Fatalf("exited while waiting for %q; screen: %q", needle, screen.String())
			}
			screen.Write(r.GetEvent().GetData().GetData())
		}
	}
	send(&tendv1.AttachRequest{Kind: &tendv1.AttachRequest_Open{Open: &tendv1.AttachOpen{Id: st.Process.Id}}})
	send(&tendv1.AttachRequest{Kind: &tendv1.AttachRequest_Input{Input: []byte("echo go-$((20+1))\n")}})
	readUntil("go-21")
	send(&tendv1.AttachRequest{Kind: &tendv1.AttachRequest_Resize{Resize: &tendv1.PtySize{Rows: 33, Cols: 77}}})
	send(&tendv1.AttachRequest{Kind: &tendv1.AttachRequest_Input{Input: []byte("stty size; exit 5\n")}})
	readUntil("33 77")
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	ev, err := collect(func() (*tendv1.ProcessEvent, error) {
		r, err := stream.Recv()
		return r.GetEvent(), err
	})
	if err != nil {
		t.Fatal(err)
	}
	if ev.exited.GetExitCode() != 5 {
		t.Errorf("exit = %v, want 5", ev.exited)
	}
}
