package tend_test

// LoaderService through the Go client, against the real daemon, with tend itself as the
// plugin (`tend serve --handshake`): Load, List, Get, Logs, Watch and Unload; calls to the
// inner tend through the host's connection with tend.ToPlugin; and the errors of Load and
// of forwarding.

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tend-dev/tend/clients/go/tend"
	"github.com/tend-dev/tend/clients/go/tendv1"
)

// pluginTag is the tag the daemon puts on a plugin's process: tend.plugin=<name>.
const pluginTag = "tend.plugin"

// loader dials the daemon's unix socket and returns a LoaderService client and a
// ProcessService client on the same connection, the one forwarded calls travel on too.
func (d *daemon) loader(t *testing.T) (tendv1.LoaderServiceClient, tendv1.ProcessServiceClient) {
	t.Helper()
	conn, err := tend.Dial(context.Background(), d.addr(), tend.WithToken(""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return tendv1.NewLoaderServiceClient(conn), tendv1.NewProcessServiceClient(conn)
}

// innerTend is the spec that loads the tend binary under test as a plugin of itself.
func innerTend(t *testing.T, name string) *tendv1.PluginSpec {
	return &tendv1.PluginSpec{Name: name, Binary: requireBin(t), Args: []string{"serve", "--handshake"}}
}

// loadInner loads tend as the plugin name and checks that it serves.
func loadInner(ctx context.Context, t *testing.T, l tendv1.LoaderServiceClient, name string) *tendv1.PluginInfo {
	t.Helper()
	resp, err := l.Load(ctx, &tendv1.LoadRequest{Spec: innerTend(t, name)})
	if err != nil {
		t.Fatalf("Load %s: %v", name, err)
	}
	p := resp.GetPlugin()
	if p.GetState() != tendv1.PluginState_PLUGIN_STATE_SERVING {
		t.Fatalf("Load %s = %v, want SERVING", name, p)
	}
	return p
}

func hasService(p *tendv1.PluginInfo, service string) bool {
	for _, s := range p.GetServices() {
		if s == service {
			return true
		}
	}
	return false
}

func TestLoaderLoadListGetLogs(t *testing.T) {
	d := startDaemon(t)
	ctx := testCtx(t)
	l, _ := d.loader(t)

	p := loadInner(ctx, t, l, "inner")
	if !hasService(p, "tend.v1.ProcessService") {
		t.Errorf("Load: services %v, want tend.v1.ProcessService among them", p.GetServices())
	}
	if p.GetAddress() == "" || p.GetPid() == 0 || p.GetProcessId() == "" {
		t.Errorf("Load = %v, want an address, a pid and a process id", p)
	}
	if p.GetNetwork() != tendv1.PluginNetwork_PLUGIN_NETWORK_UNIX || !strings.HasPrefix(p.GetHandshakeLine(), "1|1|unix|") {
		t.Errorf("Load: network %v, handshake %q; want a unix socket announced as 1|1|unix|...", p.GetNetwork(), p.GetHandshakeLine())
	}

	list, err := l.List(ctx, &tendv1.LoaderServiceListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ps := list.GetPlugins(); len(ps) != 1 || ps[0].GetSpec().GetName() != "inner" ||
		ps[0].GetState() != tendv1.PluginState_PLUGIN_STATE_SERVING {
		t.Errorf("List = %v, want inner alone, SERVING", ps)
	}
	got, err := l.Get(ctx, &tendv1.LoaderServiceGetRequest{Name: "inner"})
	if err != nil {
		t.Fatal(err)
	}
	if g := got.GetPlugin(); g.GetAddress() != p.GetAddress() || g.GetPid() != p.GetPid() ||
		g.GetState() != tendv1.PluginState_PLUGIN_STATE_SERVING {
		t.Errorf("Get(inner) = %v, want what Load returned (%v)", g, p)
	}

	// Without follow, the stream ends once the retained output is sent; the handshake line
	// is part of the stdout kept.
	logs, err := l.Logs(ctx, &tendv1.LogsRequest{Name: "inner"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[tendv1.Stream]*bytes.Buffer{tendv1.Stream_STREAM_STDOUT: {}, tendv1.Stream_STREAM_STDERR: {}}
	for {
		r, err := logs.Recv()
		if isEOF(err) {
			break
		}
		if err != nil {
			t.Fatalf("Logs: %v", err)
		}
		if data := r.GetEvent().GetData(); data != nil {
			out[data.GetStream()].Write(data.GetData())
		}
	}
	if stdout := out[tendv1.Stream_STREAM_STDOUT].String(); !strings.Contains(stdout, "1|1|unix|") {
		t.Errorf("Logs: stdout %q has no handshake line 1|1|unix|...; stderr %q", stdout, out[tendv1.Stream_STREAM_STDERR].String())
	}
}

// The inner tend is reached through the host's connection: a process started through the
// forwarding exists in the inner tend only, and the host's plugin process is the host's only.
func TestLoaderToPluginReachesTheInnerTend(t *testing.T) {
	d := startDaemon(t)
	ctx := testCtx(t)
	l, procs := d.loader(t)
	p := loadInner(ctx, t, l, "inner")
	inner := tend.ToPlugin(ctx, "inner")

	// Named, because ids are not proof: both daemons number their processes from p-1.
	ev := runToExit(inner, t, procs, &tendv1.ProcessSpec{Argv: []string{"echo", "hi"}, Name: "in-the-inner-tend"})
	if out := ev.text(tendv1.Stream_STREAM_STDOUT); out != "hi\n" || ev.exited.GetExitCode() != 0 {
		t.Fatalf("Run through the forwarding: stdout %q, exit %v; want hi, 0", out, ev.exited)
	}
	if _, err := procs.Get(inner, &tendv1.GetRequest{Id: "in-the-inner-tend"}); err != nil {
		t.Errorf("Get through the forwarding of the process run there: %v", err)
	}
	_, err := procs.Get(ctx, &tendv1.GetRequest{Id: "in-the-inner-tend"})
	wantCode(t, "Get on the host of the process run in the inner tend", err, codes.NotFound)

	innerList, err := procs.List(inner, &tendv1.ListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ps := innerList.GetProcesses(); len(ps) != 1 || ps[0].GetName() != "in-the-inner-tend" {
		t.Errorf("List through the forwarding = %v, want the inner tend's one process", ps)
	}
	hostList, err := procs.List(ctx, &tendv1.ListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ps := hostList.GetProcesses(); len(ps) != 1 || ps[0].GetId() != p.GetProcessId() ||
		ps[0].GetTags()[pluginTag] != "inner" || ps[0].GetPid() != p.GetPid() {
		t.Errorf("List on the host = %v, want the plugin's process %s alone, tagged %s=inner", ps, p.GetProcessId(), pluginTag)
	}

	// The call's own metadata travels with it; the loader, asked through the forwarding, is
	// the inner tend's, which has loaded nothing.
	nested, err := l.List(inner, &tendv1.LoaderServiceListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ps := nested.GetPlugins(); len(ps) != 0 {
		t.Errorf("LoaderService.List through the forwarding = %v, want none (the inner tend's)", ps)
	}
}

func TestLoaderWatchAndUnload(t *testing.T) {
	d := startDaemon(t)
	ctx := testCtx(t)
	l, procs := d.loader(t)

	w, err := l.Watch(ctx, &tendv1.LoaderServiceWatchRequest{Name: "inner"})
	if err != nil {
		t.Fatal(err)
	}
	// The daemon sends the headers once it has subscribed: no event is missed after this.
	if _, err := w.Header(); err != nil {
		t.Fatal(err)
	}
	events := make(chan *tendv1.PluginEvent, 64)
	go func() {
		defer close(events)
		for {
			r, err := w.Recv()
			if err != nil {
				return
			}
			events <- r.GetEvent()
		}
	}()
	next := func(want tendv1.PluginEventKind) *tendv1.PluginEvent {
		t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("Watch ended before %v", want)
			}
			if ev.GetKind() != want || ev.GetName() != "inner" || ev.GetAtUnixMs() == 0 {
				t.Fatalf("Watch: %v, want %v of inner", ev, want)
			}
			return ev
		case <-time.After(waitTimeout):
			t.Fatalf("Watch: no %v within %v", want, waitTimeout)
		}
		return nil
	}

	loadInner(ctx, t, l, "other") // filtered out by the Watch's name
	p := loadInner(ctx, t, l, "inner")
	if ev := next(tendv1.PluginEventKind_PLUGIN_EVENT_KIND_LOADED); ev.GetPlugin().GetPid() != p.GetPid() ||
		ev.GetPlugin().GetState() != tendv1.PluginState_PLUGIN_STATE_SERVING {
		t.Errorf("LOADED carries %v, want the plugin SERVING with pid %d", ev.GetPlugin(), p.GetPid())
	}

	// tend answers PluginService.Shutdown and exits within the grace: the first stage ends it.
	gone, err := l.Unload(ctx, &tendv1.UnloadRequest{Name: "inner", GraceMs: proto.Uint32(5000)})
	if err != nil {
		t.Fatal(err)
	}
	if gone.GetStage() != tendv1.UnloadStage_UNLOAD_STAGE_SHUTDOWN ||
		gone.GetPlugin().GetState() != tendv1.PluginState_PLUGIN_STATE_UNLOADED {
		t.Errorf("Unload = stage %v, plugin %v; want SHUTDOWN, UNLOADED", gone.GetStage(), gone.GetPlugin())
	}
	next(tendv1.PluginEventKind_PLUGIN_EVENT_KIND_UNLOADED)

	_, err = l.Get(ctx, &tendv1.LoaderServiceGetRequest{Name: "inner"})
	wantCode(t, "Get after Unload", err, codes.NotFound)
	// Its process stays in ProcessService, exited, for its output to be read.
	tagged, err := procs.List(ctx, &tendv1.ListRequest{Tags: map[string]string{pluginTag: "inner"}})
	if err != nil {
		t.Fatal(err)
	}
	if ps := tagged.GetProcesses(); len(ps) != 1 || ps[0].GetId() != p.GetProcessId() ||
		ps[0].GetState() != tendv1.ProcessState_PROCESS_STATE_EXITED || ps[0].GetExit() == nil {
		t.Errorf("processes tagged %s=inner after Unload = %v, want %s alone, exited", pluginTag, ps, p.GetProcessId())
	}
	_, err = procs.List(tend.ToPlugin(ctx, "inner"), &tendv1.ListRequest{})
	wantCode(t, "a call to inner after Unload", err, codes.NotFound)
}

func TestLoaderErrors(t *testing.T) {
	d := startDaemon(t)
	ctx := testCtx(t)
	l, procs := d.loader(t)

	// A bare name is looked up on the spec's PATH; the message names every directory tried.
	dir := t.TempDir()
	_, err := l.Load(ctx, &tendv1.LoadRequest{Spec: &tendv1.PluginSpec{
		Name: "nothing", Binary: "no-such-plugin-binary", Env: map[string]string{"PATH": dir + ":" + filepath.Join(dir, "bin")},
	}})
	wantCode(t, "Load of a binary not on PATH", err, codes.NotFound)
	for _, want := range []string{"no-such-plugin-binary", dir, filepath.Join(dir, "bin")} {
		if !strings.Contains(status.Convert(err).Message(), want) {
			t.Errorf("Load of a binary not on PATH: %q does not name %s", status.Convert(err).Message(), want)
		}
	}
	missing := filepath.Join(dir, "kv-plugin")
	_, err = l.Load(ctx, &tendv1.LoadRequest{Spec: &tendv1.PluginSpec{Name: "nothing", Binary: missing}})
	wantCode(t, "Load of a path that does not exist", err, codes.NotFound)
	if !strings.Contains(status.Convert(err).Message(), missing) {
		t.Errorf("Load of a path that does not exist: %q does not name %s", status.Convert(err).Message(), missing)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("%s exists: %v", missing, err)
	}

	loadInner(ctx, t, l, "inner")
	_, err = l.Load(ctx, &tendv1.LoadRequest{Spec: innerTend(t, "inner")})
	wantCode(t, "a second Load of inner", err, codes.AlreadyExists)

	_, err = procs.List(tend.ToPlugin(ctx, "nobody"), &tendv1.ListRequest{})
	wantCode(t, "a call to an unknown plugin", err, codes.NotFound)
	if !strings.Contains(status.Convert(err).Message(), "nobody") {
		t.Errorf("a call to an unknown plugin: %q does not name it", status.Convert(err).Message())
	}
}
