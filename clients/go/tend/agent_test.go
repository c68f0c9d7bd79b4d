package tend_test

// AgentService through the Go client, against the real daemon (with a 300 ms idle
// quiescence, so that idleness comes quickly). Every call has a deadline (testCtx) and
// every wait for output or events is bounded (waitTimeout).

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tend-dev/tend/clients/go/tend"
	"github.com/tend-dev/tend/clients/go/tendv1"
)

// waitTimeout bounds every wait for one piece of output or one event.
const waitTimeout = 10 * time.Second

// startAgentDaemon starts a daemon for agent tests. --grace-ms: an interactive shell
// ignores SIGTERM, so the daemon's shutdown SIGKILLs shell agents after the grace; keep
// it well inside the fixture's stop grace.
func startAgentDaemon(t *testing.T) *daemon {
	return startDaemon(t, "--quiescence-ms", "300", "--grace-ms", "1000")
}

// agents dials the daemon's unix socket and returns an AgentService client.
func (d *daemon) agents(t *testing.T) tendv1.AgentServiceClient {
	t.Helper()
	conn, err := tend.Dial(context.Background(), d.addr(), tend.WithToken(""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return tendv1.NewAgentServiceClient(conn)
}

func spawnAgent(ctx context.Context, t *testing.T, c tendv1.AgentServiceClient, spec *tendv1.AgentSpec) *tendv1.AgentInfo {
	t.Helper()
	r, err := c.Spawn(ctx, &tendv1.SpawnRequest{Spec: spec})
	if err != nil {
		t.Fatalf("Spawn %s: %v", spec.GetName(), err)
	}
	return r.Agent
}

func getAgent(ctx context.Context, t *testing.T, c tendv1.AgentServiceClient, name string) *tendv1.AgentInfo {
	t.Helper()
	r, err := c.Get(ctx, &tendv1.AgentServiceGetRequest{Name: name})
	if err != nil {
		t.Fatalf("Get %s: %v", name, err)
	}
	return r.Agent
}

func nudge(ctx context.Context, t *testing.T, c tendv1.AgentServiceClient, req *tendv1.NudgeRequest) tendv1.NudgeOutcome {
	t.Helper()
	r, err := c.Nudge(ctx, req)
	if err != nil {
		t.Fatalf("Nudge %s: %v", req.Name, err)
	}
	return r.Outcome
}

// waitOutput polls RecentOutput until it holds needle.
func waitOutput(ctx context.Context, t *testing.T, c tendv1.AgentServiceClient, name, needle string) []byte {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		r, err := c.RecentOutput(ctx, &tendv1.RecentOutputRequest{Name: name})
		if err != nil {
			t.Fatalf("RecentOutput %s: %v", name, err)
		}
		if bytes.Contains(r.Data, []byte(needle)) {
			return r.Data
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in %s's output within %v: %q", needle, name, waitTimeout, r.Data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s: code %v (%v), want %v", what, got, err, want)
	}
}

func TestAgentSpawnListGet(t *testing.T) {
	d := startAgentDaemon(t)
	ctx := testCtx(t)
	c := d.agents(t)

	a := spawnAgent(ctx, t, c, &tendv1.AgentSpec{Name: "cat-1", Argv: []string{"cat"}, Env: map[string]string{"GREETING": "hi"}})
	if a.Status != tendv1.AgentStatus_AGENT_STATUS_RUNNING || a.Pid == 0 || a.ProcessId == "" {
		t.Errorf("spawned agent: %v", a)
	}
	// The defaults: a task agent in a 24x80 PTY, the default restart policy filled in.
	if a.Spec.GetKind() != tendv1.AgentKind_AGENT_KIND_TASK || a.Spec.GetSize().GetRows() != 24 || a.Spec.GetSize().GetCols() != 80 {
		t.Errorf("spec defaults: %v", a.Spec)
	}
	if a.Spec.GetRestart().GetInitialBackoffMs() != 1000 || a.Spec.GetRestart().GetStartLimit() != 5 {
		t.Errorf("restart defaults: %v", a.Spec.GetRestart())
	}
	if a.Spec.GetEnv()["GREETING"] != "hi" || a.StartedAtUnixMs == 0 || a.RestartCount != 0 || a.LastExit != nil {
		t.Errorf("spawned agent: %v", a)
	}
	spawnAgent(ctx, t, c, &tendv1.AgentSpec{
		Name: "another.agent_2", Argv: []string{"sh"},
		Kind: tendv1.AgentKind_AGENT_KIND_CREW, Size: &tendv1.PtySize{Rows: 30, Cols: 100},
	})

	list, err := c.List(ctx, &tendv1.AgentServiceListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, x := range list.Agents {
		names = append(names, x.Spec.GetName())
	}
	if strings.Join(names, ",") != "another.agent_2,cat-1" { // name order
		t.Errorf("List names = %v", names)
	}

	g := getAgent(ctx, t, c, "cat-1")
	if g.Pid != a.Pid || g.ProcessId != a.ProcessId || g.Status != tendv1.AgentStatus_AGENT_STATUS_RUNNING {
		t.Errorf("Get = %v, want the spawned %v", g, a)
	}
	if g.Idle || g.LastActivityUnixMs != 0 { // never idle before the first output
		t.Errorf("Get before any output: idle %v, last activity %d", g.Idle, g.LastActivityUnixMs)
	}

	// Each run is a ProcessService process tagged with the agent's name.
	p, err := d.client(t).Get(ctx, &tendv1.GetRequest{Id: a.ProcessId})
	if err != nil {
		t.Fatal(err)
	}
	if p.Process.GetTags()["tend.agent"] != "cat-1" || p.Process.GetPid() != a.Pid || p.Process.GetPty() == nil {
		t.Errorf("the agent's process: %v", p.Process)
	}
}

func TestAgentNudgeRecentOutputWaitIdle(t *testing.T) {
	d := startAgentDaemon(t)
	ctx := testCtx(t)
	c := d.agents(t)
	spawnAgent(ctx, t, c, &tendv1.AgentSpec{Name: "cat", Argv: []string{"cat"}})

	// Before any output an agent is never idle: WaitIdle times out.
	w, err := c.WaitIdle(ctx, &tendv1.WaitIdleRequest{Name: "cat", TimeoutMs: 300})
	if err != nil {
		t.Fatal(err)
	}
	if w.Outcome != tendv1.IdleOutcome_IDLE_OUTCOME_TIMED_OUT {
		t.Errorf("WaitIdle before output = %v, want timed out", w.Outcome)
	}

	// Immediate nudge: the PTY echoes the line, then cat writes it back; Enter is a
	// carriage return, which the terminal turns into a newline.
	if o := nudge(ctx, t, c, &tendv1.NudgeRequest{Name: "cat", Message: "hello agent"}); o != tendv1.NudgeOutcome_NUDGE_OUTCOME_DELIVERED {
		t.Fatalf("Nudge = %v", o)
	}
	out := waitOutput(ctx, t, c, "cat", "hello agent\r\nhello agent\r\n")
	if n := bytes.Count(out, []byte("hello agent")); n != 2 {
		t.Errorf("RecentOutput = %q, want the line twice", out)
	}

	start := time.Now()
	w, err = c.WaitIdle(ctx, &tendv1.WaitIdleRequest{Name: "cat", TimeoutMs: 10000})
	if err != nil {
		t.Fatal(err)
	}
	if w.Outcome != tendv1.IdleOutcome_IDLE_OUTCOME_IDLE || time.Since(start) > 5*time.Second {
		t.Errorf("WaitIdle = %v after %v, want idle after about the 300 ms quiescence", w.Outcome, time.Since(start))
	}
	if g := getAgent(ctx, t, c, "cat"); !g.Idle || g.LastActivityUnixMs == 0 {
		t.Errorf("Get after WaitIdle: idle %v, last activity %d", g.Idle, g.LastActivityUnixMs)
	}

	// No submit: typed, echoed, but no line for cat yet. RecentOutput's offset places the tail.
	nudge(ctx, t, c, &tendv1.NudgeRequest{Name: "cat", Message: "pending", NoSubmit: true})
	waitOutput(ctx, t, c, "cat", "pending")
	full, err := c.RecentOutput(ctx, &tendv1.RecentOutputRequest{Name: "cat"})
	if err != nil {
		t.Fatal(err)
	}
	tail, err := c.RecentOutput(ctx, &tendv1.RecentOutputRequest{Name: "cat", Bytes: 7})
	if err != nil {
		t.Fatal(err)
	}
	if string(tail.Data) != "pending" || tail.Offset != full.Offset+uint64(len(full.Data))-7 {
		t.Errorf("RecentOutput(7) = %q at %d; the whole is %q at %d", tail.Data, tail.Offset, full.Data, full.Offset)
	}
}

func TestAgentNudgeWaitIdleMode(t *testing.T) {
	d := startAgentDaemon(t)
	ctx := testCtx(t)
	c := d.agents(t)
	spawnAgent(ctx, t, c, &tendv1.AgentSpec{Name: "sh", Argv: []string{"sh"}, Env: map[string]string{"PS1": "$ "}})
	// Typed once the shell has printed its prompt and gone quiet.
	o := nudge(ctx, t, c, &tendv1.NudgeRequest{Name: "sh", Message: "echo nudged-$((6*7))", Mode: tendv1.NudgeMode_NUDGE_MODE_WAIT_IDLE, TimeoutMs: 15000})
	if o != tendv1.NudgeOutcome_NUDGE_OUTCOME_DELIVERED {
		t.Fatalf("Nudge = %v", o)
	}
	waitOutput(ctx, t, c, "sh", "nudged-42")
}

// agentSession reads an AgentService.Attach stream in the background, so that every
// wait for output is bounded.
type agentSession struct {
	stream tendv1.AgentService_AttachClient
	recv   chan attachMsg
	screen bytes.Buffer
	exited *tendv1.ExitStatus
	// The latest run announced by a `started` event (follow_restarts only).
	started *tendv1.ProcessInfo
}

type attachMsg struct {
	r   *tendv1.AgentServiceAttachResponse
	err error
}

func attachAgent(ctx context.Context, t *testing.T, c tendv1.AgentServiceClient, open *tendv1.AgentAttachOpen) *agentSession {
	t.Helper()
	stream, err := c.Attach(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := &agentSession{stream: stream, recv: make(chan attachMsg, 64)}
	go func() {
		for {
			r, err := stream.Recv()
			s.recv <- attachMsg{r, err}
			if err != nil {
				return
			}
		}
	}()
	s.send(t, &tendv1.AgentServiceAttachRequest{Kind: &tendv1.AgentServiceAttachRequest_Open{Open: open}})
	return s
}

func (s *agentSession) send(t *testing.T, req *tendv1.AgentServiceAttachRequest) {
	t.Helper()
	if err := s.stream.Send(req); err != nil {
		t.Fatalf("Attach send: %v", err)
	}
}

func (s *agentSession) input(t *testing.T, text string) {
	t.Helper()
	s.send(t, &tendv1.AgentServiceAttachRequest{Kind: &tendv1.AgentServiceAttachRequest_Input{Input: []byte(text)}})
}

// next returns the next message or error, failing the test after waitTimeout.
func (s *agentSession) next(t *testing.T) (*tendv1.AgentServiceAttachResponse, error) {
	t.Helper()
	select {
	case m := <-s.recv:
		if m.err == nil {
			if next := m.r.GetEvent().GetStarted(); next != nil {
				// The next run of a followed agent: only after the last one's exit.
				if s.exited == nil {
					t.Fatalf("started before the previous run exited: %v", m.r)
				}
				s.started, s.exited = next, nil
				return m.r, nil
			}
			if s.exited != nil {
				t.Fatalf("event after exited: %v", m.r)
			}
			s.screen.Write(m.r.GetEvent().GetData().GetData())
			if x := m.r.GetEvent().GetExited(); x != nil {
				s.exited = x
			}
		}
		return m.r, m.err
	case <-time.After(waitTimeout):
		t.Fatalf("Attach: nothing within %v; screen: %q", waitTimeout, s.screen.String())
		return nil, nil
	}
}

func (s *agentSession) readUntil(t *testing.T, needle string) {
	t.Helper()
	for !strings.Contains(s.screen.String(), needle) {
		if _, err := s.next(t); err != nil {
			t.Fatalf("waiting for %q: %v; screen: %q", needle, err, s.screen.String())
		}
		if s.exited != nil {
			t.Fatalf("exited while waiting for %q; screen: %q", needle, s.screen.String())
		}
	}
}

// readToExit reads to the exited event and checks that the stream ends there.
func (s *agentSession) readToExit(t *testing.T) *tendv1.ExitStatus {
	t.Helper()
	for s.exited == nil {
		if _, err := s.next(t); err != nil {
			t.Fatalf("waiting for the exit: %v; screen: %q", err, s.screen.String())
		}
	}
	if r, err := s.next(t); !isEOF(err) {
		t.Fatalf("after exited: %v, %v; want the end of the stream", r, err)
	}
	return s.exited
}

func TestAgentAttach(t *testing.T) {
	d := startAgentDaemon(t)
	ctx := testCtx(t)
	c := d.agents(t)
	spawnAgent(ctx, t, c, &tendv1.AgentSpec{Name: "cat", Argv: []string{"cat"}})
	nudge(ctx, t, c, &tendv1.NudgeRequest{Name: "cat", Message: "before"})
	waitOutput(ctx, t, c, "cat", "before\r\nbefore")

	// A new attacher first gets the recent output, then the live stream.
	s := attachAgent(ctx, t, c, &tendv1.AgentAttachOpen{Name: "cat"})
	s.readUntil(t, "before\r\nbefore")
	s.input(t, "typed\n")
	s.readUntil(t, "typed\r\ntyped\r\n") // the terminal's echo, then cat's copy

	// The resize reaches the agent's terminal (the last resize of any attacher wins).
	s.send(t, &tendv1.AgentServiceAttachRequest{Kind: &tendv1.AgentServiceAttachRequest_Resize{Resize: &tendv1.PtySize{Rows: 33, Cols: 77}}})

	// A read-only attacher sees the same terminal but may not type.
	ro := attachAgent(ctx, t, c, &tendv1.AgentAttachOpen{Name: "cat", ReadOnly: true, ReplayBytes: 4096})
	ro.readUntil(t, "typed")
	ro.input(t, "nope\n")
	for {
		_, err := ro.next(t)
		if err != nil {
			wantCode(t, "read-only input", err, codes.FailedPrecondition)
			break
		}
	}

	// ^D at the start of a line: cat reads EOF and exits; the session gets the exit, then ends.
	s.input(t, "\x04")
	if x := s.readToExit(t); x.ExitCode == nil || x.GetExitCode() != 0 {
		t.Errorf("exit = %v, want 0", x)
	}
	// The agent's status follows the exit shortly after (not atomically with the Attach
	// exit event): poll, bounded.
	g := getAgent(ctx, t, c, "cat")
	for deadline := time.Now().Add(waitTimeout); g.Status == tendv1.AgentStatus_AGENT_STATUS_RUNNING && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		g = getAgent(ctx, t, c, "cat")
	}
	if g.Status != tendv1.AgentStatus_AGENT_STATUS_EXITED || g.LastExit.GetExitCode() != 0 {
		t.Errorf("after exit: %v", g)
	}
	if strings.Contains(s.screen.String(), "nope") {
		t.Errorf("a read-only attacher's input was typed: %q", s.screen.String())
	}

	// An exited agent cannot be attached to.
	st, err := c.Attach(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&tendv1.AgentServiceAttachRequest{Kind: &tendv1.AgentServiceAttachRequest_Open{Open: &tendv1.AgentAttachOpen{Name: "cat"}}}); err != nil {
		t.Fatal(err)
	}
	_, err = st.Recv()
	wantCode(t, "Attach to an exited agent", err, codes.FailedPrecondition)
}

func TestAgentAttachEndsOnStop(t *testing.T) {
	d := startAgentDaemon(t)
	ctx := testCtx(t)
	c := d.agents(t)
	spawnAgent(ctx, t, c, &tendv1.AgentSpec{Name: "cat", Argv: []string{"cat"}})
	s := attachAgent(ctx, t, c, &tendv1.AgentAttachOpen{Name: "cat"})
	s.input(t, "hi\n")
	s.readUntil(t, "hi\r\nhi\r\n")
	if _, err := c.Stop(ctx, &tendv1.StopRequest{Name: "cat", TimeoutMs: 2000}); err != nil {
		t.Fatal(err)
	}
	if x := s.readToExit(t); x.GetSignalName() != "SIGTERM" {
		t.Errorf("exit = %v, want SIGTERM", x)
	}
}

func TestAgentAttachFollowsRestarts(t *testing.T) {
	d := startAgentDaemon(t)
	ctx := testCtx(t)
	c := d.agents(t)
	first := spawnAgent(ctx, t, c, &tendv1.AgentSpec{
		Name: "phoenix",
		Argv: []string{"sh", "-c", "echo run-$$; exec sleep 1000"},
		Kind: tendv1.AgentKind_AGENT_KIND_CREW,
	})
	s := attachAgent(ctx, t, c, &tendv1.AgentAttachOpen{Name: "phoenix", ReadOnly: true, FollowRestarts: true})
	s.readUntil(t, fmt.Sprintf("run-%d", first.Pid))
	if _, err := c.Respawn(ctx, &tendv1.RespawnRequest{Name: "phoenix"}); err != nil {
		t.Fatal(err)
	}
	// The first run's exit, then the next run on the same stream.
	for s.started == nil {
		if _, err := s.next(t); err != nil {
			t.Fatalf("waiting for the next run: %v; screen: %q", err, s.screen.String())
		}
	}
	if s.started.Pid == first.Pid || s.started.Pid == 0 {
		t.Fatalf("next run pid %d, first %d", s.started.Pid, first.Pid)
	}
	s.readUntil(t, fmt.Sprintf("run-%d", s.started.Pid))
	// Removed: the run's exit ends the stream.
	if _, err := c.Remove(ctx, &tendv1.AgentServiceRemoveRequest{Name: "phoenix"}); err != nil {
		t.Fatal(err)
	}
	s.readToExit(t)
}

func TestAgentStopRespawnRemove(t *testing.T) {
	d := startAgentDaemon(t)
	ctx := testCtx(t)
	c := d.agents(t)
	a := spawnAgent(ctx, t, c, &tendv1.AgentSpec{Name: "cat", Argv: []string{"cat"}})

	st, err := c.Stop(ctx, &tendv1.StopRequest{Name: "cat", TimeoutMs: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if st.Agent.Status != tendv1.AgentStatus_AGENT_STATUS_STOPPED || st.Agent.Pid != 0 || st.Agent.LastExit.GetSignalName() != "SIGTERM" {
		t.Errorf("Stop = %v", st.Agent)
	}
	if o := nudge(ctx, t, c, &tendv1.NudgeRequest{Name: "cat", Message: "x"}); o != tendv1.NudgeOutcome_NUDGE_OUTCOME_NOT_RUNNING {
		t.Errorf("Nudge a stopped agent = %v, want not running", o)
	}
	w, err := c.WaitIdle(ctx, &tendv1.WaitIdleRequest{Name: "cat", TimeoutMs: 1000})
	if err != nil || w.Outcome != tendv1.IdleOutcome_IDLE_OUTCOME_NOT_RUNNING {
		t.Errorf("WaitIdle a stopped agent = %v, %v; want not running", w, err)
	}

	r, err := c.Respawn(ctx, &tendv1.RespawnRequest{Name: "cat"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Agent.Status != tendv1.AgentStatus_AGENT_STATUS_RUNNING || r.Agent.RestartCount != 1 ||
		r.Agent.Pid == 0 || r.Agent.Pid == a.Pid || r.Agent.ProcessId == a.ProcessId {
		t.Errorf("Respawn = %v (first run: pid %d, %s)", r.Agent, a.Pid, a.ProcessId)
	}
	nudge(ctx, t, c, &tendv1.NudgeRequest{Name: "cat", Message: "again"})
	waitOutput(ctx, t, c, "cat", "again\r\nagain")

	if _, err := c.Remove(ctx, &tendv1.AgentServiceRemoveRequest{Name: "cat"}); err != nil {
		t.Fatal(err)
	}
	list, err := c.List(ctx, &tendv1.AgentServiceListRequest{})
	if err != nil || len(list.Agents) != 0 {
		t.Errorf("List after Remove = %v, %v", list, err)
	}
	_, err = c.Get(ctx, &tendv1.AgentServiceGetRequest{Name: "cat"})
	wantCode(t, "Get a removed agent", err, codes.NotFound)
	_, err = d.client(t).Get(ctx, &tendv1.GetRequest{Id: r.Agent.ProcessId})
	wantCode(t, "Get a removed agent's process", err, codes.NotFound)
}

func TestAgentErrors(t *testing.T) {
	d := startAgentDaemon(t)
	ctx := testCtx(t)
	c := d.agents(t)

	const unknown = "no-such-agent"
	calls := map[string]func() error{
		"Get":     func() error { _, err := c.Get(ctx, &tendv1.AgentServiceGetRequest{Name: unknown}); return err },
		"Stop":    func() error { _, err := c.Stop(ctx, &tendv1.StopRequest{Name: unknown}); return err },
		"Respawn": func() error { _, err := c.Respawn(ctx, &tendv1.RespawnRequest{Name: unknown}); return err },
		"Remove":  func() error { _, err := c.Remove(ctx, &tendv1.AgentServiceRemoveRequest{Name: unknown}); return err },
		"Nudge":   func() error { _, err := c.Nudge(ctx, &tendv1.NudgeRequest{Name: unknown, Message: "x"}); return err },
		"WaitIdle": func() error {
			_, err := c.WaitIdle(ctx, &tendv1.WaitIdleRequest{Name: unknown, TimeoutMs: 100})
			return err
		},
		"RecentOutput": func() error { _, err := c.RecentOutput(ctx, &tendv1.RecentOutputRequest{Name: unknown}); return err },
		"Attach": func() error {
			st, err := c.Attach(ctx)
			if err != nil {
				return err
			}
			if err := st.Send(&tendv1.AgentServiceAttachRequest{Kind: &tendv1.AgentServiceAttachRequest_Open{Open: &tendv1.AgentAttachOpen{Name: unknown}}}); err != nil {
				return err
			}
			_, err = st.Recv()
			return err
		},
	}
	for name, call := range calls {
		err := call()
		wantCode(t, name+" unknown", err, codes.NotFound)
		if err != nil && !strings.Contains(status.Convert(err).Message(), unknown) {
			t.Errorf("%s unknown: message %q does not name the agent", name, status.Convert(err).Message())
		}
	}

	for _, bad := range []string{"", "-dash", "has space", "a/b", strings.Repeat("x", 65)} {
		_, err := c.Spawn(ctx, &tendv1.SpawnRequest{Spec: &tendv1.AgentSpec{Name: bad, Argv: []string{"true"}}})
		wantCode(t, "Spawn "+bad, err, codes.InvalidArgument)
		if err != nil && !strings.HasPrefix(status.Convert(err).Message(), "spec.name") {
			t.Errorf("Spawn %q: message %q does not start with the field", bad, status.Convert(err).Message())
		}
		_, err = c.Get(ctx, &tendv1.AgentServiceGetRequest{Name: bad})
		wantCode(t, "Get "+bad, err, codes.InvalidArgument)
	}
	_, err := c.Spawn(ctx, &tendv1.SpawnRequest{Spec: &tendv1.AgentSpec{Name: "ok"}})
	wantCode(t, "Spawn without argv", err, codes.InvalidArgument)
	_, err = c.Spawn(ctx, &tendv1.SpawnRequest{})
	wantCode(t, "Spawn without spec", err, codes.InvalidArgument)

	spawnAgent(ctx, t, c, &tendv1.AgentSpec{Name: "dup", Argv: []string{"cat"}})
	_, err = c.Spawn(ctx, &tendv1.SpawnRequest{Spec: &tendv1.AgentSpec{Name: "dup", Argv: []string{"cat"}}})
	wantCode(t, "Spawn a taken name", err, codes.AlreadyExists)
}

func TestAgentWatch(t *testing.T) {
	d := startAgentDaemon(t)
	ctx := testCtx(t)
	c := d.agents(t)
	w, err := c.Watch(ctx, &tendv1.WatchRequest{Name: "task"})
	if err != nil {
		t.Fatal(err)
	}
	// The daemon sends the headers once it has subscribed: no event is missed after this.
	if _, err := w.Header(); err != nil {
		t.Fatal(err)
	}
	events := make(chan *tendv1.AgentEvent, 64)
	go func() {
		defer close(events)
		for {
			r, err := w.Recv()
			if err != nil {
				return
			}
			events <- r.Event
		}
	}()
	spawnAgent(ctx, t, c, &tendv1.AgentSpec{Name: "other", Argv: []string{"cat"}}) // filtered out
	a := spawnAgent(ctx, t, c, &tendv1.AgentSpec{Name: "task", Argv: []string{"sh", "-c", "echo hi; sleep 0.2; exit 3"}})

	var got []*tendv1.AgentEvent
	for len(got) == 0 || got[len(got)-1].Kind != tendv1.AgentEventKind_AGENT_EVENT_KIND_EXITED {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("Watch ended after %v", got)
			}
			if ev.Name != "task" {
				t.Fatalf("event of another agent: %v", ev)
			}
			got = append(got, ev)
		case <-time.After(waitTimeout):
			t.Fatalf("no EXITED within %v; events: %v", waitTimeout, got)
		}
	}
	if got[0].Kind != tendv1.AgentEventKind_AGENT_EVENT_KIND_SPAWNED || got[0].Pid != a.Pid || got[0].AtUnixMs == 0 {
		t.Errorf("first event = %v, want SPAWNED with pid %d", got[0], a.Pid)
	}
	for _, ev := range got[1 : len(got)-1] {
		if k := ev.Kind; k != tendv1.AgentEventKind_AGENT_EVENT_KIND_IDLE && k != tendv1.AgentEventKind_AGENT_EVENT_KIND_BUSY {
			t.Errorf("between SPAWNED and EXITED: %v", ev)
		}
	}
	if x := got[len(got)-1].Exit; x.GetExitCode() != 3 {
		t.Errorf("EXITED exit = %v, want 3", x)
	}
}
