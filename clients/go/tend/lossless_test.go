package tend_test

// Lossless readers and kill_on_disconnect, against the real daemon: a lossless Connect (and
// Run, lossless by default) holds a fast writer back rather than drop bytes, and a Run or an
// Attach that owns its process stops it when the client goes away.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tend-dev/tend/clients/go/tendv1"
)

// A small ring and no head: a reader that pauses falls far more than a ring's length behind a
// writer of seqLines lines (about 20 MB).
var smallRing = []string{"--head-bytes", "0", "--tail-bytes", "65536"}

const seqLines = 2700000

// seqOutput is what `seq 1 n` prints.
func seqOutput(n int) []byte {
	var b bytes.Buffer
	b.Grow(8 * n)
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "%d\n", i)
	}
	return b.Bytes()
}

// checkLossless fails the test unless ev holds exactly want on stdout from offset 0, without
// gaps, and a clean exit.
func checkLossless(t *testing.T, ev *events, want []byte) {
	t.Helper()
	if len(ev.gaps) > 0 {
		t.Errorf("a lossless reader got %d gap event(s), the first %v", len(ev.gaps), ev.gaps[0])
	}
	got := ev.data[tendv1.Stream_STREAM_STDOUT]
	if got == nil {
		t.Fatalf("no stdout at all")
	}
	if off := ev.first[tendv1.Stream_STREAM_STDOUT]; off != 0 {
		t.Errorf("first stdout offset = %d, want 0", off)
	}
	if !bytes.Equal(got.Bytes(), want) {
		i := 0
		for i < got.Len() && i < len(want) && got.Bytes()[i] == want[i] {
			i++
		}
		t.Errorf("stdout: %d bytes, want %d; they differ from byte %d", got.Len(), len(want), i)
	}
	if ev.exited.GetExitCode() != 0 || ev.exited.Signal != nil {
		t.Errorf("exit = %v, want 0", ev.exited)
	}
}

func TestLosslessConnectHoldsTheWriter(t *testing.T) {
	d := startDaemon(t, smallRing...)
	ctx := testCtx(t)
	c := d.client(t)

	// The process floods only after a line on stdin: the Connect is surely in place once it
	// has seen "ready". The daemon's pipe read that was already waiting then (its room asked
	// for before the hold existed) must not overrun the ring either.
	st, err := c.Start(ctx, &tendv1.StartRequest{Spec: &tendv1.ProcessSpec{
		Argv:  []string{"sh", "-c", fmt.Sprintf("echo ready; read a; exec seq 1 %d", seqLines)},
		Stdin: true,
	}})
	if err != nil {
		t.Fatal(err)
	}
	id := st.Process.GetId()
	stream, err := c.Connect(ctx, &tendv1.ConnectRequest{
		Id: id, Stream: tendv1.Stream_STREAM_STDOUT, Lossless: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	prefix := []byte{}
	for _, want := range []string{"ready\n"} {
		for len(prefix) < len(want) || !bytes.HasSuffix(prefix, []byte(want)) {
			r, err := stream.Recv()
			if err != nil {
				t.Fatalf("Connect: %v (so far %q)", err, prefix)
			}
			if r.GetEvent().GetGap() != nil {
				t.Fatalf("gap event: %v", r)
			}
			prefix = append(prefix, r.GetEvent().GetData().GetData()...)
		}
		if _, err := c.SendInput(ctx, &tendv1.SendInputRequest{Id: id, Data: []byte("go\n")}); err != nil {
			t.Fatal(err)
		}
	}

	// Fall behind: unread, the writer must be held (it cannot get far past the ring).
	time.Sleep(time.Second)
	g, err := c.Get(ctx, &tendv1.GetRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	if g.Process.GetState() != tendv1.ProcessState_PROCESS_STATE_RUNNING {
		t.Errorf("the writer finished while its lossless reader read nothing: %v", g.Process)
	}

	ev, err := collect(func() (*tendv1.ProcessEvent, error) {
		r, err := stream.Recv()
		return r.GetEvent(), err
	})
	if err != nil {
		t.Fatal(err)
	}
	// collect started after the first events: put them back in front.
	ev.first[tendv1.Stream_STREAM_STDOUT] = 0
	ev.data[tendv1.Stream_STREAM_STDOUT] = bytes.NewBuffer(append(prefix, ev.data[tendv1.Stream_STREAM_STDOUT].Bytes()...))
	checkLossless(t, ev, append([]byte("ready\n"), seqOutput(seqLines)...))
}

func TestObserverConnectGetsAGap(t *testing.T) {
	d := startDaemon(t, smallRing...)
	ctx := testCtx(t)
	c := d.client(t)
	// Run as an observer (nothing holds the writer); a second, observer Connect that has
	// read nothing since offset 0 must be told what it missed.
	run, err := c.Run(ctx, &tendv1.RunRequest{Spec: sh(fmt.Sprintf("seq 1 %d", seqLines)), Observer: true})
	if err != nil {
		t.Fatal(err)
	}
	var id string
	ev, err := collect(func() (*tendv1.ProcessEvent, error) {
		r, err := run.Recv()
		if s := r.GetEvent().GetStarted(); s != nil {
			id = s.Id
		}
		return r.GetEvent(), err
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = ev // an observer Run may or may not have kept up
	conn, err := c.Connect(ctx, &tendv1.ConnectRequest{Id: id, Stream: tendv1.Stream_STREAM_STDOUT})
	if err != nil {
		t.Fatal(err)
	}
	ev, err = collect(func() (*tendv1.ProcessEvent, error) {
		r, err := conn.Recv()
		return r.GetEvent(), err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.gaps) == 0 {
		t.Errorf("replay from 0 of %d lines through a 64 KiB ring had no gap event", seqLines)
	}
}

func TestRunIsLosslessByDefault(t *testing.T) {
	d := startDaemon(t, smallRing...)
	ctx := testCtx(t)
	run, err := d.client(t).Run(ctx, &tendv1.RunRequest{Spec: sh(fmt.Sprintf("seq 1 %d", seqLines))})
	if err != nil {
		t.Fatal(err)
	}
	paused := false
	ev, err := collect(func() (*tendv1.ProcessEvent, error) {
		r, err := run.Recv()
		if !paused && r.GetEvent().GetData() != nil {
			paused = true
			time.Sleep(time.Second)
		}
		return r.GetEvent(), err
	})
	if err != nil {
		t.Fatal(err)
	}
	checkLossless(t, ev, seqOutput(seqLines))
}

// runUntilStarted starts a Run of script on its own context and returns the process id once
// the script printed "up", and the function that cancels the call.
func runUntilStarted(t *testing.T, c tendv1.ProcessServiceClient, req *tendv1.RunRequest) (string, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(testCtx(t))
	run, err := c.Run(ctx, req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var id string
	var out strings.Builder
	for !strings.Contains(out.String(), "up") {
		r, err := run.Recv()
		if err != nil {
			cancel()
			t.Fatalf("Run: %v (output so far %q)", err, out.String())
		}
		if s := r.GetEvent().GetStarted(); s != nil {
			id = s.Id
		}
		out.Write(r.GetEvent().GetData().GetData())
	}
	return id, cancel
}

func TestCancelledRunKillsTheProcess(t *testing.T) {
	d := startDaemon(t, "--grace-ms", "2000")
	ctx := testCtx(t)
	c := d.client(t)
	id, cancel := runUntilStarted(t, c, &tendv1.RunRequest{Spec: sh("echo up; exec sleep 60")})
	began := time.Now()
	cancel()
	w, err := c.Wait(ctx, &tendv1.WaitRequest{Id: id, TimeoutMs: 10000})
	if err != nil {
		t.Fatal(err)
	}
	if w.TimedOut {
		t.Fatalf("the process outlived its cancelled Run by 10s: %v", w.Process)
	}
	if exit := w.Process.GetExit(); exit.GetSignalName() != "SIGTERM" {
		t.Errorf("exit = %v, want SIGTERM", exit)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("the process took %v to stop after the cancel", took)
	}
}

func TestRunWithoutKillOnDisconnectOutlivesTheCall(t *testing.T) {
	d := startDaemon(t)
	ctx := testCtx(t)
	c := d.client(t)
	id, cancel := runUntilStarted(t, c, &tendv1.RunRequest{
		Spec: sh("echo up; exec sleep 60"), KillOnDisconnect: proto.Bool(false),
	})
	cancel()
	w, err := c.Wait(ctx, &tendv1.WaitRequest{Id: id, TimeoutMs: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if !w.TimedOut || w.Process.GetState() != tendv1.ProcessState_PROCESS_STATE_RUNNING {
		t.Fatalf("kill_on_disconnect=false, yet the process stopped with its Run: %v", w.Process)
	}
	if _, err := c.Signal(ctx, &tendv1.SignalRequest{Id: id, Signal: "KILL"}); err != nil {
		t.Fatal(err)
	}
}

func TestAttachKillOnDisconnect(t *testing.T) {
	d := startDaemon(t, "--grace-ms", "2000")
	ctx := testCtx(t)
	c := d.client(t)
	for _, kill := range []bool{false, true} {
		st, err := c.Start(ctx, &tendv1.StartRequest{Spec: sh("echo up; exec sleep 60")})
		if err != nil {
			t.Fatal(err)
		}
		id := st.Process.GetId()
		actx, cancel := context.WithCancel(ctx)
		stream, err := c.Attach(actx)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		open := &tendv1.AttachOpen{Id: id, Lossless: true, KillOnDisconnect: kill, FromOffset: proto.Uint64(0)}
		if err := stream.Send(&tendv1.AttachRequest{Kind: &tendv1.AttachRequest_Open{Open: open}}); err != nil {
			cancel()
			t.Fatal(err)
		}
		var out strings.Builder
		for !strings.Contains(out.String(), "up") {
			r, err := stream.Recv()
			if err != nil {
				cancel()
				t.Fatalf("Attach: %v", err)
			}
			out.Write(r.GetEvent().GetData().GetData())
		}
		cancel()
		w, err := c.Wait(ctx, &tendv1.WaitRequest{Id: id, TimeoutMs: 1500})
		if err != nil {
			t.Fatal(err)
		}
		if kill && (w.TimedOut || w.Process.GetExit().GetSignalName() != "SIGTERM") {
			t.Errorf("kill_on_disconnect: after the Attach was cancelled: %v", w.Process)
		}
		if !kill && !w.TimedOut {
			t.Errorf("without kill_on_disconnect the process stopped with its Attach: %v", w.Process)
		}
		if !kill {
			if _, err := c.Signal(ctx, &tendv1.SignalRequest{Id: id, Signal: "KILL"}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestCannotExecuteCarriesTheShellExitCode(t *testing.T) {
	d := startDaemon(t)
	ctx := testCtx(t)
	c := d.client(t)
	notExecutable := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(notExecutable, []byte("#!/bin/sh\necho hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		argv string
		code codes.Code
		exit string
	}{
		{"/nonexistent/program", codes.NotFound, "127"},
		{notExecutable, codes.PermissionDenied, "126"},
	} {
		trailer := metadata.MD{}
		_, err := c.Start(ctx, &tendv1.StartRequest{Spec: &tendv1.ProcessSpec{Argv: []string{tc.argv}}}, grpc.Trailer(&trailer))
		if status.Code(err) != tc.code {
			t.Errorf("Start %s = %v, want %v", tc.argv, err, tc.code)
		}
		if got := trailer.Get("tend-exit-code"); len(got) != 1 || got[0] != tc.exit {
			t.Errorf("Start %s: tend-exit-code = %v, want %s", tc.argv, got, tc.exit)
		}

		run, err := c.Run(ctx, &tendv1.RunRequest{Spec: &tendv1.ProcessSpec{Argv: []string{tc.argv}}})
		if err == nil {
			_, err = run.Recv()
		}
		if status.Code(err) != tc.code {
			t.Errorf("Run %s = %v, want %v", tc.argv, err, tc.code)
		}
		if run != nil {
			if got := run.Trailer().Get("tend-exit-code"); len(got) != 1 || got[0] != tc.exit {
				t.Errorf("Run %s: tend-exit-code = %v, want %s", tc.argv, got, tc.exit)
			}
		}
	}
}
