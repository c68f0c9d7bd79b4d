package tend_test

// RunnerService (environments) through the Go client, against the real daemon: a native
// environment and a process in it, FindFreePort, the errors, and a Docker environment end to
// end when an engine answers at $DOCKER_HOST (scripts/test starts one; without it the Docker
// test skips saying why, and fails under CI=true).

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tend-dev/tend/clients/go/tend"
	"github.com/tend-dev/tend/clients/go/tendv1"
)

// busyboxImage is the image scripts/docker-up imports into its private engine.
const busyboxImage = "tend-test/busybox:latest"

// runner dials the daemon's unix socket and returns a RunnerService client and a
// ProcessService client on the same connection.
func (d *daemon) runner(t *testing.T) (tendv1.RunnerServiceClient, tendv1.ProcessServiceClient) {
	t.Helper()
	conn, err := tend.Dial(context.Background(), d.addr(), tend.WithToken(""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return tendv1.NewRunnerServiceClient(conn), tendv1.NewProcessServiceClient(conn)
}

// runToExit runs spec through Run and returns what the stream delivered.
func runToExit(ctx context.Context, t *testing.T, c tendv1.ProcessServiceClient, spec *tendv1.ProcessSpec) *events {
	t.Helper()
	stream, err := c.Run(ctx, &tendv1.RunRequest{Spec: spec})
	if err != nil {
		t.Fatalf("Run %v: %v", spec.GetArgv(), err)
	}
	ev, err := collect(func() (*tendv1.ProcessEvent, error) {
		r, err := stream.Recv()
		return r.GetEvent(), err
	})
	if err != nil {
		t.Fatalf("Run %v: %v", spec.GetArgv(), err)
	}
	return ev
}

func TestRunnerNativeEnvironment(t *testing.T) {
	d := startDaemon(t)
	ctx := testCtx(t)
	r, procs := d.runner(t)

	list, err := r.ListEnvironments(ctx, &tendv1.ListEnvironmentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if envs := list.GetEnvironments(); len(envs) != 1 || envs[0].GetId() != "native" ||
		envs[0].GetState() != tendv1.EnvironmentState_ENVIRONMENT_STATE_READY {
		t.Fatalf("ListEnvironments = %v, want native alone, READY", envs)
	}

	created, err := r.CreateEnvironment(ctx, &tendv1.CreateEnvironmentRequest{
		Name: "here", Kind: tendv1.EnvironmentKind_ENVIRONMENT_KIND_NATIVE,
	})
	if err != nil {
		t.Fatal(err)
	}
	env := created.GetEnvironment()
	if !strings.HasPrefix(env.GetId(), "e-") || env.GetName() != "here" ||
		env.GetState() != tendv1.EnvironmentState_ENVIRONMENT_STATE_READY {
		t.Fatalf("CreateEnvironment = %v, want e-N named here, READY at once", env)
	}
	got, err := r.GetEnvironment(ctx, &tendv1.GetEnvironmentRequest{EnvironmentId: "here"})
	if err != nil || got.GetEnvironment().GetId() != env.GetId() {
		t.Fatalf("GetEnvironment(here) = %v, %v; want %s", got, err, env.GetId())
	}

	// A process in it, by name.
	ev := runToExit(ctx, t, procs, &tendv1.ProcessSpec{Argv: []string{"echo", "hi"}, EnvironmentId: "here"})
	if out := ev.text(tendv1.Stream_STREAM_STDOUT); out != "hi\n" {
		t.Errorf("stdout = %q, want %q", out, "hi\n")
	}
	if ev.exited.ExitCode == nil || ev.exited.GetExitCode() != 0 {
		t.Errorf("exit = %v, want 0", ev.exited)
	}
	if ev.started.GetEnvironmentId() != env.GetId() {
		t.Errorf("started.environment_id = %q, want %q", ev.started.GetEnvironmentId(), env.GetId())
	}

	// FindFreePort: two calls, two ports, both bindable.
	a, err := r.FindFreePort(ctx, &tendv1.FindFreePortRequest{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.FindFreePort(ctx, &tendv1.FindFreePortRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if a.GetPort() == b.GetPort() || a.GetPort() == 0 {
		t.Errorf("FindFreePort gave %d then %d, want two different ports", a.GetPort(), b.GetPort())
	}
	for _, p := range []*tendv1.FindFreePortResponse{a, b} {
		l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", p.GetAddress(), p.GetPort()))
		if err != nil {
			t.Errorf("bind the free port %d: %v", p.GetPort(), err)
			continue
		}
		l.Close()
	}

	// Errors name what is wrong.
	_, err = r.GetEnvironment(ctx, &tendv1.GetEnvironmentRequest{EnvironmentId: "e-99"})
	wantCode(t, "GetEnvironment(e-99)", err, codes.NotFound)
	if !strings.Contains(status.Convert(err).Message(), "e-99") {
		t.Errorf("GetEnvironment(e-99): %v does not name e-99", err)
	}
	_, err = r.CreateEnvironment(ctx, &tendv1.CreateEnvironmentRequest{Name: "nokind"})
	wantCode(t, "CreateEnvironment without kind", err, codes.InvalidArgument)
	if !strings.Contains(status.Convert(err).Message(), "kind") {
		t.Errorf("CreateEnvironment without kind: %v does not name kind", err)
	}
	_, err = procs.Start(ctx, &tendv1.StartRequest{Spec: &tendv1.ProcessSpec{Argv: []string{"true"}, EnvironmentId: "nowhere"}})
	wantCode(t, "Start in an unknown environment", err, codes.NotFound)

	// Shut down: forgotten.
	if _, err := r.ShutdownEnvironment(ctx, &tendv1.ShutdownEnvironmentRequest{EnvironmentId: "here"}); err != nil {
		t.Fatal(err)
	}
	_, err = r.GetEnvironment(ctx, &tendv1.GetEnvironmentRequest{EnvironmentId: "here"})
	wantCode(t, "GetEnvironment after ShutdownEnvironment", err, codes.NotFound)
}

// requireDocker returns normally when an engine answers GET /_ping at $DOCKER_HOST. Otherwise
// the test skips saying why, or fails under CI=true (where scripts/test starts the engine).
func requireDocker(t *testing.T) {
	t.Helper()
	why := dockerMissing()
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("docker is required under CI=true; scripts/test installs and starts it (docker missing: %s)", why)
	}
	t.Skipf("docker missing: %s", why)
}

// dockerClient talks HTTP to the engine at $DOCKER_HOST (unix:// or tcp://), as a user of the
// engine would.
func dockerClient() (*http.Client, string, error) {
	host := os.Getenv("DOCKER_HOST")
	switch {
	case strings.HasPrefix(host, "unix://"):
		sock := strings.TrimPrefix(host, "unix://")
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}, "http://docker", nil
	case strings.HasPrefix(host, "tcp://"):
		return &http.Client{Timeout: 10 * time.Second}, "http://" + strings.TrimSuffix(strings.TrimPrefix(host, "tcp://"), "/"), nil
	default:
		return nil, "", fmt.Errorf("DOCKER_HOST=%q: only unix:// and tcp:// are supported", host)
	}
}

// dockerStatus is the HTTP status of GET path on the engine.
func dockerStatus(path string) (int, error) {
	c, base, err := dockerClient()
	if err != nil {
		return 0, err
	}
	resp, err := c.Get(base + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// dockerMissing says why no engine can be used, or "" when $DOCKER_HOST answers. There is no
// fallback to /var/run/docker.sock, as in the Rust tests.
func dockerMissing() string {
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		return `DOCKER_HOST is not set (scripts/test sets it; by hand: export "$(scripts/docker-up)")`
	}
	code, err := dockerStatus("/_ping")
	if err != nil {
		return fmt.Sprintf("DOCKER_HOST=%s: %v", host, err)
	}
	if code != http.StatusOK {
		return fmt.Sprintf("DOCKER_HOST=%s: GET /_ping answered %d", host, code)
	}
	return ""
}

func TestRunnerDockerEnvironment(t *testing.T) {
	requireDocker(t)
	d := startDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, procs := d.runner(t)

	caps, err := r.Capabilities(ctx, &tendv1.CapabilitiesRequest{Refresh: true})
	if err != nil {
		t.Fatal(err)
	}
	if !caps.GetDocker().GetAvailable() || caps.GetDocker().GetVersion() == "" {
		t.Fatalf("Capabilities.docker = %v, want available with a version (DOCKER_HOST answers)", caps.GetDocker())
	}

	created, err := r.CreateEnvironment(ctx, &tendv1.CreateEnvironmentRequest{
		Name:   "box",
		Kind:   tendv1.EnvironmentKind_ENVIRONMENT_KIND_DOCKER,
		Docker: &tendv1.DockerSettings{Image: busyboxImage},
	})
	if err != nil {
		t.Fatal(err)
	}
	id := created.GetEnvironment().GetId()
	if created.GetEnvironment().GetState() != tendv1.EnvironmentState_ENVIRONMENT_STATE_CREATED {
		t.Errorf("CreateEnvironment = %v, want CREATED", created.GetEnvironment())
	}
	shutDown := false
	t.Cleanup(func() {
		if !shutDown {
			_, _ = r.ShutdownEnvironment(context.Background(), &tendv1.ShutdownEnvironmentRequest{EnvironmentId: id})
		}
	})

	// InitEnvironment streams progress; the last event carries the environment, READY.
	stream, err := r.InitEnvironment(ctx, &tendv1.InitEnvironmentRequest{EnvironmentId: "box"})
	if err != nil {
		t.Fatal(err)
	}
	var phases []string
	var last *tendv1.InitEnvironmentResponse
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("InitEnvironment after %v: %v", phases, err)
		}
		phases = append(phases, ev.GetPhase())
		last = ev
	}
	if last == nil || last.GetPhase() != "ready" {
		t.Fatalf("InitEnvironment phases %v, want them to end with ready", phases)
	}
	env := last.GetEnvironment()
	if env.GetId() != id || env.GetState() != tendv1.EnvironmentState_ENVIRONMENT_STATE_READY || env.GetContainerId() == "" {
		t.Fatalf("InitEnvironment's last environment = %v, want %s READY with a container", env, id)
	}
	if code, err := dockerStatus("/containers/" + env.GetContainerId() + "/json"); err != nil || code != http.StatusOK {
		t.Errorf("the engine does not know container %s: %d, %v", env.GetContainerId(), code, err)
	}

	// A process in the container: its output and its exit code.
	ev := runToExit(ctx, t, procs, &tendv1.ProcessSpec{Argv: []string{"sh", "-c", "echo hi; exit 3"}, EnvironmentId: "box"})
	if out := ev.text(tendv1.Stream_STREAM_STDOUT); out != "hi\n" {
		t.Errorf("stdout = %q, want %q", out, "hi\n")
	}
	if ev.exited.ExitCode == nil || ev.exited.GetExitCode() != 3 {
		t.Errorf("exit = %v, want exit code 3", ev.exited)
	}
	if ev.started.GetEnvironmentId() != id {
		t.Errorf("started.environment_id = %q, want %q", ev.started.GetEnvironmentId(), id)
	}
	// It ran in the container: Docker names the container's host after its id.
	ev = runToExit(ctx, t, procs, &tendv1.ProcessSpec{Argv: []string{"hostname"}, EnvironmentId: id})
	if got, want := ev.text(tendv1.Stream_STREAM_STDOUT), env.GetContainerId()[:12]+"\n"; got != want {
		t.Errorf("hostname in the environment = %q, want %q", got, want)
	}

	// Shutdown removes the container and forgets the environment.
	grace := uint32(1000)
	resp, err := r.ShutdownEnvironment(ctx, &tendv1.ShutdownEnvironmentRequest{EnvironmentId: "box", GraceMs: &grace})
	if err != nil {
		t.Fatal(err)
	}
	shutDown = true
	if !resp.GetContainerRemoved() {
		t.Errorf("ShutdownEnvironment = %v, want container_removed", resp)
	}
	if code, err := dockerStatus("/containers/" + env.GetContainerId() + "/json"); err != nil || code != http.StatusNotFound {
		t.Errorf("container %s after ShutdownEnvironment: %d, %v; want 404", env.GetContainerId(), code, err)
	}
	_, err = r.GetEnvironment(ctx, &tendv1.GetEnvironmentRequest{EnvironmentId: "box"})
	wantCode(t, "GetEnvironment after ShutdownEnvironment", err, codes.NotFound)
}
