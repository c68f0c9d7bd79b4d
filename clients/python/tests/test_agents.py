"""AgentService through the Python client (sync and asyncio), against the real daemon.

The daemon runs with --quiescence-ms 300 so that idleness comes quickly. Every call has a
deadline; every wait for output or events is bounded.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, List

import grpc
import pytest

import tend_client
from tend_client import agent_pb2 as apb
from tend_client import process_pb2 as pb

TIMEOUT = 30.0  # deadline of every call
OUTPUT_TIMEOUT = 10.0  # waiting for one expected piece of output or one event
QUIESCENCE_MS = 300


@pytest.fixture
def daemon(make_daemon):
    # --grace-ms: an interactive shell ignores SIGTERM, so the daemon's shutdown SIGKILLs the
    # shell agents after the grace; keep that well inside the fixture's stop grace.
    return make_daemon("--quiescence-ms", str(QUIESCENCE_MS), "--grace-ms", "1000")


def spawn(client, name: str, argv: List[str], **spec_kw) -> apb.AgentInfo:
    r = client.agent.Spawn(apb.SpawnRequest(spec=apb.AgentSpec(name=name, argv=argv, **spec_kw)), timeout=TIMEOUT)
    return r.agent


def get(client, name: str) -> apb.AgentInfo:
    return client.agent.Get(apb.AgentServiceGetRequest(name=name), timeout=TIMEOUT).agent


def recent(client, name: str, n: int = 0) -> bytes:
    return client.agent.RecentOutput(apb.RecentOutputRequest(name=name, bytes=n), timeout=TIMEOUT).data


def wait_for_output(client, name: str, needle: bytes) -> bytes:
    """Poll RecentOutput until it holds needle, at most OUTPUT_TIMEOUT."""
    deadline = time.monotonic() + OUTPUT_TIMEOUT
    while True:
        data = recent(client, name)
        if needle in data:
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"no {needle!r} in {name}'s output within {OUTPUT_TIMEOUT}s: {data!r}")
        time.sleep(0.05)


def wait_until(what: str, cond: Callable[[], bool]) -> None:
    deadline = time.monotonic() + OUTPUT_TIMEOUT
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {OUTPUT_TIMEOUT}s")
        time.sleep(0.05)


def status_name(s: int) -> str:
    return apb.AgentStatus.Name(s)


def test_spawn_list_get(daemon, client):
    a = spawn(client, "cat-1", ["cat"], env={"GREETING": "hi"})
    assert a.spec.name == "cat-1" and list(a.spec.argv) == ["cat"]
    assert a.status == apb.AGENT_STATUS_RUNNING and a.pid > 0 and a.process_id
    # The defaults: a task agent in a 24x80 PTY, with the default restart policy filled in.
    assert a.spec.kind == apb.AGENT_KIND_TASK
    assert (a.spec.size.rows, a.spec.size.cols) == (24, 80)
    assert a.spec.restart.initial_backoff_ms == 1000 and a.spec.restart.start_limit == 5
    assert dict(a.spec.env) == {"GREETING": "hi"}
    assert a.started_at_unix_ms > 0 and a.restart_count == 0 and not a.HasField("last_exit")

    b = spawn(client, "another.agent_2", ["sh"], size=pb.PtySize(rows=30, cols=100), kind=apb.AGENT_KIND_CREW)
    assert b.spec.kind == apb.AGENT_KIND_CREW and (b.spec.size.rows, b.spec.size.cols) == (30, 100)

    names = [x.spec.name for x in client.agent.List(apb.AgentServiceListRequest(), timeout=TIMEOUT).agents]
    assert names == ["another.agent_2", "cat-1"], names  # name order

    g = get(client, "cat-1")
    assert g.pid == a.pid and g.process_id == a.process_id and g.status == apb.AGENT_STATUS_RUNNING
    # No output yet: never idle before the first output.
    assert g.last_activity_unix_ms == 0 and not g.idle

    # Each run is a ProcessService process, tagged with the agent's name, in a PTY.
    p = client.process.Get(pb.GetRequest(id=a.process_id), timeout=TIMEOUT).process
    assert p.tags["tend.agent"] == "cat-1" and p.pid == a.pid and p.HasField("pty")


def test_nudge_immediate_shows_in_recent_output(daemon, client):
    spawn(client, "cat", ["cat"])
    r = client.agent.Nudge(apb.NudgeRequest(name="cat", message="hello agent"), timeout=TIMEOUT)
    assert r.outcome == apb.NUDGE_OUTCOME_DELIVERED
    # The PTY echoes the typed line, then cat writes it back; Enter is a carriage return,
    # which the terminal turns into a newline.
    data = wait_for_output(client, "cat", b"hello agent\r\nhello agent\r\n")
    assert data.count(b"hello agent") == 2, data

    # no_submit: typed, not submitted (the terminal echoes it, cat has no line yet).
    r = client.agent.Nudge(apb.NudgeRequest(name="cat", message="pending", no_submit=True), timeout=TIMEOUT)
    assert r.outcome == apb.NUDGE_OUTCOME_DELIVERED
    data = wait_for_output(client, "cat", b"pending")
    assert data.endswith(b"pending"), data

    # RecentOutput: the last n bytes, with their offset in the run's stream.
    full = client.agent.RecentOutput(apb.RecentOutputRequest(name="cat"), timeout=TIMEOUT)
    tail = client.agent.RecentOutput(apb.RecentOutputRequest(name="cat", bytes=7), timeout=TIMEOUT)
    assert tail.data == b"pending" and tail.offset == full.offset + len(full.data) - 7


def test_wait_idle(daemon, client):
    spawn(client, "cat", ["cat"])
    # Before any output an agent is never idle: WaitIdle times out.
    t0 = time.monotonic()
    r = client.agent.WaitIdle(apb.WaitIdleRequest(name="cat", timeout_ms=500), timeout=TIMEOUT)
    assert r.outcome == apb.IDLE_OUTCOME_TIMED_OUT
    assert 0.4 <= time.monotonic() - t0 < 5

    client.agent.Nudge(apb.NudgeRequest(name="cat", message="x"), timeout=TIMEOUT)
    t0 = time.monotonic()
    r = client.agent.WaitIdle(apb.WaitIdleRequest(name="cat", timeout_ms=10_000), timeout=TIMEOUT)
    elapsed = time.monotonic() - t0
    assert r.outcome == apb.IDLE_OUTCOME_IDLE
    assert elapsed < 5, elapsed  # the daemon's quiescence (300 ms), not the timeout
    a = get(client, "cat")
    assert a.idle and a.last_activity_unix_ms > 0

    # Already idle: at once. A longer quiescence than the daemon's is honoured.
    t0 = time.monotonic()
    r = client.agent.WaitIdle(apb.WaitIdleRequest(name="cat", quiescence_ms=100), timeout=TIMEOUT)
    assert r.outcome == apb.IDLE_OUTCOME_IDLE and time.monotonic() - t0 < 1


def test_wait_idle_times_out_on_a_busy_agent(daemon, client):
    spawn(client, "loud", ["sh", "-c", "while :; do echo x; sleep 0.1; done"])
    wait_for_output(client, "loud", b"x")
    t0 = time.monotonic()
    r = client.agent.WaitIdle(apb.WaitIdleRequest(name="loud", quiescence_ms=1000, timeout_ms=1500), timeout=TIMEOUT)
    elapsed = time.monotonic() - t0
    assert r.outcome == apb.IDLE_OUTCOME_TIMED_OUT
    assert 1.4 <= elapsed < 6, elapsed
    assert not get(client, "loud").idle
    # A nudge that waits for idle gives up too, and types nothing.
    r = client.agent.Nudge(
        apb.NudgeRequest(name="loud", message="never", mode=apb.NUDGE_MODE_WAIT_IDLE, timeout_ms=500), timeout=TIMEOUT
    )
    assert r.outcome == apb.NUDGE_OUTCOME_TIMED_OUT
    assert b"never" not in recent(client, "loud")


def test_nudge_python_repl(daemon, client):
    spawn(client, "py", ["python3", "-i", "-q"])
    # Wait-idle mode: typed once the REPL has printed its prompt and gone quiet.
    r = client.agent.Nudge(
        apb.NudgeRequest(name="py", message="print(6*7)", mode=apb.NUDGE_MODE_WAIT_IDLE, timeout_ms=15_000),
        timeout=TIMEOUT,
    )
    assert r.outcome == apb.NUDGE_OUTCOME_DELIVERED
    data = wait_for_output(client, "py", b"42")
    assert b"print(6*7)" in data and b"\n42\r\n" in data, data
    # And an immediate one.
    r = client.agent.Nudge(apb.NudgeRequest(name="py", message="print('ab' * 3)"), timeout=TIMEOUT)
    assert r.outcome == apb.NUDGE_OUTCOME_DELIVERED
    wait_for_output(client, "py", b"ababab")


def test_stop_respawn_remove(daemon, client):
    a = spawn(client, "cat", ["cat"])
    s = client.agent.Stop(apb.StopRequest(name="cat", timeout_ms=5000), timeout=TIMEOUT).agent
    assert s.status == apb.AGENT_STATUS_STOPPED, status_name(s.status)
    assert s.pid == 0 and s.last_exit.signal_name == "SIGTERM"

    # A stopped agent takes no input and is never idle; Attach refuses it.
    r = client.agent.Nudge(apb.NudgeRequest(name="cat", message="x"), timeout=TIMEOUT)
    assert r.outcome == apb.NUDGE_OUTCOME_NOT_RUNNING
    r = client.agent.WaitIdle(apb.WaitIdleRequest(name="cat", timeout_ms=1000), timeout=TIMEOUT)
    assert r.outcome == apb.IDLE_OUTCOME_NOT_RUNNING
    call = client.agent.Attach(iter([apb.AgentServiceAttachRequest(open=apb.AgentAttachOpen(name="cat"))]), timeout=TIMEOUT)
    with pytest.raises(grpc.RpcError) as err:
        list(call)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, err.value

    r2 = client.agent.Respawn(apb.RespawnRequest(name="cat"), timeout=TIMEOUT).agent
    assert r2.status == apb.AGENT_STATUS_RUNNING and r2.restart_count == 1
    assert r2.pid > 0 and r2.pid != a.pid and r2.process_id != a.process_id
    client.agent.Nudge(apb.NudgeRequest(name="cat", message="again"), timeout=TIMEOUT)
    wait_for_output(client, "cat", b"again\r\nagain")

    # Respawn of a running agent restarts it too.
    r3 = client.agent.Respawn(apb.RespawnRequest(name="cat"), timeout=TIMEOUT).agent
    assert r3.status == apb.AGENT_STATUS_RUNNING and r3.restart_count == 2 and r3.pid != r2.pid
    assert b"again" not in recent(client, "cat")  # RecentOutput is the current run's

    client.agent.Remove(apb.AgentServiceRemoveRequest(name="cat"), timeout=TIMEOUT)
    assert list(client.agent.List(apb.AgentServiceListRequest(), timeout=TIMEOUT).agents) == []
    with pytest.raises(grpc.RpcError) as err:
        get(client, "cat")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # Its runs are gone from ProcessService too.
    with pytest.raises(grpc.RpcError) as err:
        client.process.Get(pb.GetRequest(id=r3.process_id), timeout=TIMEOUT)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_task_agent_exits(daemon, client):
    spawn(client, "task", ["sh", "-c", "echo done; exit 3"])
    wait_until("exited", lambda: get(client, "task").status == apb.AGENT_STATUS_EXITED)
    a = get(client, "task")
    assert a.last_exit.exit_code == 3 and a.pid == 0 and a.restart_count == 0
    assert b"done" in recent(client, "task")  # the last run's output stays readable


def test_crew_agent_restarts(daemon, client):
    spawn(
        client,
        "crew",
        ["sh", "-c", "echo run; sleep 0.2; exit 1"],
        kind=apb.AGENT_KIND_CREW,
        restart=apb.RestartPolicy(initial_backoff_ms=50, max_backoff_ms=100),
    )
    wait_until("restarted twice", lambda: get(client, "crew").restart_count >= 2)
    a = get(client, "crew")
    assert a.status in (apb.AGENT_STATUS_RUNNING, apb.AGENT_STATUS_RESTARTING), status_name(a.status)
    assert a.last_exit.exit_code == 1
    s = client.agent.Stop(apb.StopRequest(name="crew"), timeout=TIMEOUT).agent
    assert s.status == apb.AGENT_STATUS_STOPPED
    n = s.restart_count
    time.sleep(0.5)
    a = get(client, "crew")
    assert a.status == apb.AGENT_STATUS_STOPPED and a.restart_count == n, "a stopped crew agent restarted"


def expect_code(code: grpc.StatusCode, fn, *args) -> str:
    with pytest.raises(grpc.RpcError) as err:
        fn(*args, timeout=TIMEOUT)
    assert err.value.code() == code, f"{fn}: {err.value.code()}: {err.value.details()}"
    return err.value.details()


def test_errors(daemon, client):
    ag = client.agent
    unknown = "no-such-agent"
    for fn, req in [
        (ag.Get, apb.AgentServiceGetRequest(name=unknown)),
        (ag.Stop, apb.StopRequest(name=unknown)),
        (ag.Respawn, apb.RespawnRequest(name=unknown)),
        (ag.Remove, apb.AgentServiceRemoveRequest(name=unknown)),
        (ag.Nudge, apb.NudgeRequest(name=unknown, message="x")),
        (ag.WaitIdle, apb.WaitIdleRequest(name=unknown, timeout_ms=100)),
        (ag.RecentOutput, apb.RecentOutputRequest(name=unknown)),
    ]:
        details = expect_code(grpc.StatusCode.NOT_FOUND, fn, req)
        assert unknown in details, details

    for bad in ["", "-dash", "has space", "a/b", "x" * 65]:
        details = expect_code(
            grpc.StatusCode.INVALID_ARGUMENT, ag.Spawn, apb.SpawnRequest(spec=apb.AgentSpec(name=bad, argv=["true"]))
        )
        assert details.startswith("spec.name"), details
        expect_code(grpc.StatusCode.INVALID_ARGUMENT, ag.Get, apb.AgentServiceGetRequest(name=bad))
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, ag.Spawn, apb.SpawnRequest(spec=apb.AgentSpec(name="ok")))  # no argv
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, ag.Spawn, apb.SpawnRequest())  # no spec
    expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        ag.Spawn,
        apb.SpawnRequest(spec=apb.AgentSpec(name="ok", argv=["true"], prompt_file="/no/such/prompt")),
    )
    with pytest.raises(grpc.RpcError) as err:
        next(ag.Watch(apb.WatchRequest(name="a b"), timeout=TIMEOUT))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value

    spawn(client, "dup", ["cat"])
    expect_code(grpc.StatusCode.ALREADY_EXISTS, ag.Spawn, apb.SpawnRequest(spec=apb.AgentSpec(name="dup", argv=["cat"])))
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, ag.Nudge, apb.NudgeRequest(name="dup", message="x" * (64 * 1024 + 1)))
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, ag.RecentOutput, apb.RecentOutputRequest(name="dup", bytes=9 << 20))


# --- asyncio: Attach and Watch ---------------------------------------------------------------


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 4 * TIMEOUT))


class Session:
    """One AgentService.Attach call: writes requests, reads PTY output into a screen buffer."""

    def __init__(self, call) -> None:
        self.call = call
        self.screen = bytearray()
        self.exited = None

    async def read_event(self) -> pb.ProcessEvent:
        r = await asyncio.wait_for(self.call.read(), OUTPUT_TIMEOUT)
        if r is grpc.aio.EOF:
            raise AssertionError(f"Attach ended; screen so far: {bytes(self.screen)!r}")
        ev = r.event
        kind = ev.WhichOneof("kind")
        assert self.exited is None, f"event after exited: {ev}"
        if kind == "data":
            assert ev.data.stream == pb.STREAM_PTY, ev
            self.screen += ev.data.data
        elif kind == "exited":
            self.exited = ev.exited
        return ev

    async def read_until(self, needle: bytes) -> None:
        try:
            while needle not in self.screen:
                await self.read_event()
                assert self.exited is None, f"exited before {needle!r}; screen: {bytes(self.screen)!r}"
        except asyncio.TimeoutError:
            raise AssertionError(f"no {needle!r} within {OUTPUT_TIMEOUT}s; screen: {bytes(self.screen)!r}") from None

    async def read_until_exit(self) -> pb.ExitStatus:
        try:
            while self.exited is None:
                await self.read_event()
            end = await asyncio.wait_for(self.call.read(), OUTPUT_TIMEOUT)
        except asyncio.TimeoutError:
            raise AssertionError(f"no exit and end within {OUTPUT_TIMEOUT}s; screen: {bytes(self.screen)!r}") from None
        assert end is grpc.aio.EOF, f"event after exited: {end}"
        return self.exited


async def attach(c, name: str, **open_kw) -> Session:
    s = Session(c.agent.Attach(timeout=TIMEOUT))
    await s.call.write(apb.AgentServiceAttachRequest(open=apb.AgentAttachOpen(name=name, **open_kw)))
    return s


def test_attach_replay_input_resize_stop(daemon):
    async def scenario():
        async with tend_client.connect_async(daemon.addr, token="") as c:
            await c.agent.Spawn(
                apb.SpawnRequest(spec=apb.AgentSpec(name="sh", argv=["sh"], env={"PS1": "$ "})), timeout=TIMEOUT
            )
            await c.agent.Nudge(apb.NudgeRequest(name="sh", message="echo before-$((1+1))"), timeout=TIMEOUT)
            # A new attacher first gets the recent output, then the live stream.
            s = await attach(c, "sh")
            await s.read_until(b"before-2")

            await s.call.write(apb.AgentServiceAttachRequest(input=b"echo typed-$((20+1))\n"))
            await s.read_until(b"typed-21")

            await s.call.write(apb.AgentServiceAttachRequest(resize=pb.PtySize(rows=33, cols=77)))
            await s.call.write(apb.AgentServiceAttachRequest(input=b"stty size\n"))
            await s.read_until(b"33 77")

            # A read-only attacher sees the same terminal, but may not type.
            ro = await attach(c, "sh", read_only=True, replay_bytes=4096)
            await ro.read_until(b"typed-21")
            await ro.call.write(apb.AgentServiceAttachRequest(input=b"echo nope\n"))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                while True:
                    await ro.read_event()
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, err.value

            # Stop ends the run; the attached session gets the exit, then the end of the stream.
            stopped = await c.agent.Stop(apb.StopRequest(name="sh", timeout_ms=500), timeout=TIMEOUT)
            assert stopped.agent.status == apb.AGENT_STATUS_STOPPED
            exit = await s.read_until_exit()
            assert exit.signal != 0 or exit.HasField("exit_code"), exit

    run(scenario())


def test_attach_until_the_agent_exits(daemon):
    async def scenario():
        async with tend_client.connect_async(daemon.addr, token="") as c:
            await c.agent.Spawn(apb.SpawnRequest(spec=apb.AgentSpec(name="sh", argv=["sh"])), timeout=TIMEOUT)
            s = await attach(c, "sh")
            await s.call.write(apb.AgentServiceAttachRequest(input=b"exit 6\n"))
            assert (await s.read_until_exit()).exit_code == 6
            # The agent's status follows the exit shortly after (not atomically with the
            # Attach exit event): poll, bounded.
            deadline = asyncio.get_running_loop().time() + OUTPUT_TIMEOUT
            while True:
                a = (await c.agent.Get(apb.AgentServiceGetRequest(name="sh"), timeout=TIMEOUT)).agent
                if a.status != apb.AGENT_STATUS_RUNNING or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.02)
            assert a.status == apb.AGENT_STATUS_EXITED and a.last_exit.exit_code == 6, a

    run(scenario())


def test_attach_unknown_agent(daemon):
    async def scenario():
        async with tend_client.connect_async(daemon.addr, token="") as c:
            s = await attach(c, "nobody")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await s.read_event()
            assert err.value.code() == grpc.StatusCode.NOT_FOUND

    run(scenario())


async def next_event(call) -> apb.AgentEvent:
    r = await asyncio.wait_for(call.read(), OUTPUT_TIMEOUT)
    assert r is not grpc.aio.EOF, "Watch ended"
    return r.event


def test_watch_task_agent_spawned_then_exited(daemon):
    async def scenario():
        async with tend_client.connect_async(daemon.addr, token="") as c:
            watch = c.agent.Watch(apb.WatchRequest(name="task"), timeout=TIMEOUT)
            # The daemon sends the headers once it has subscribed: no event is missed after this.
            await asyncio.wait_for(watch.initial_metadata(), OUTPUT_TIMEOUT)
            everything = c.agent.Watch(apb.WatchRequest(), timeout=TIMEOUT)
            await asyncio.wait_for(everything.initial_metadata(), OUTPUT_TIMEOUT)

            # Another agent's events are filtered out of the named watch.
            await c.agent.Spawn(apb.SpawnRequest(spec=apb.AgentSpec(name="other", argv=["cat"])), timeout=TIMEOUT)
            spawned = await c.agent.Spawn(
                apb.SpawnRequest(spec=apb.AgentSpec(name="task", argv=["sh", "-c", "echo hi; sleep 0.2; exit 3"])),
                timeout=TIMEOUT,
            )
            kinds = []
            events = []
            while not kinds or kinds[-1] != apb.AGENT_EVENT_KIND_EXITED:
                ev = await next_event(watch)
                assert ev.name == "task", ev
                events.append(ev)
                kinds.append(ev.kind)
            assert kinds[0] == apb.AGENT_EVENT_KIND_SPAWNED, [apb.AgentEventKind.Name(k) for k in kinds]
            assert events[0].pid == spawned.agent.pid and events[0].at_unix_ms > 0
            # Between them, at most the idle/busy changes of its output.
            assert set(kinds[1:-1]) <= {apb.AGENT_EVENT_KIND_IDLE, apb.AGENT_EVENT_KIND_BUSY}, kinds
            assert events[-1].exit.exit_code == 3

            # Remove: a REMOVED event.
            await c.agent.Remove(apb.AgentServiceRemoveRequest(name="task"), timeout=TIMEOUT)
            ev = await next_event(watch)
            assert (ev.name, ev.kind) == ("task", apb.AGENT_EVENT_KIND_REMOVED), ev

            # The unfiltered watch saw both agents.
            seen = set()
            while ("task", apb.AGENT_EVENT_KIND_REMOVED) not in seen:
                ev = await next_event(everything)
                seen.add((ev.name, ev.kind))
            assert ("other", apb.AGENT_EVENT_KIND_SPAWNED) in seen and ("task", apb.AGENT_EVENT_KIND_SPAWNED) in seen
            watch.cancel()
            everything.cancel()

    run(scenario())


def test_watch_idle_and_busy(daemon):
    async def scenario():
        async with tend_client.connect_async(daemon.addr, token="") as c:
            watch = c.agent.Watch(apb.WatchRequest(name="cat"), timeout=TIMEOUT)
            await asyncio.wait_for(watch.initial_metadata(), OUTPUT_TIMEOUT)
            await c.agent.Spawn(apb.SpawnRequest(spec=apb.AgentSpec(name="cat", argv=["cat"])), timeout=TIMEOUT)
            assert (await next_event(watch)).kind == apb.AGENT_EVENT_KIND_SPAWNED
            await c.agent.Nudge(apb.NudgeRequest(name="cat", message="one"), timeout=TIMEOUT)
            assert (await next_event(watch)).kind == apb.AGENT_EVENT_KIND_IDLE  # 300 ms after the echo
            await c.agent.WaitIdle(apb.WaitIdleRequest(name="cat", timeout_ms=10_000), timeout=TIMEOUT)
            await c.agent.Nudge(apb.NudgeRequest(name="cat", message="two"), timeout=TIMEOUT)
            # BUSY, then IDLE again (under heavy load the submit key can come after the
            # quiescence and add a BUSY, IDLE pair: alternation is what holds).
            kinds = [(await next_event(watch)).kind for _ in range(2)]
            assert kinds == [apb.AGENT_EVENT_KIND_BUSY, apb.AGENT_EVENT_KIND_IDLE], kinds
            await c.agent.WaitIdle(apb.WaitIdleRequest(name="cat", timeout_ms=10_000), timeout=TIMEOUT)
            await c.agent.Stop(apb.StopRequest(name="cat"), timeout=TIMEOUT)
            # STOPPED; the daemon does not (yet) send EXITED for a run ended by Stop.
            kinds = []
            while apb.AGENT_EVENT_KIND_STOPPED not in kinds:
                kinds.append((await next_event(watch)).kind)
            assert set(kinds[:-1]) <= {
                apb.AGENT_EVENT_KIND_EXITED,
                apb.AGENT_EVENT_KIND_BUSY,
                apb.AGENT_EVENT_KIND_IDLE,
            }, [apb.AgentEventKind.Name(k) for k in kinds]
            watch.cancel()

    run(scenario())


def test_attach_follows_respawns_until_removed(client):
    """follow_restarts: the next run arrives as a `started` event; Remove ends the stream."""
    first = spawn(client, "phoenix", ["sh", "-c", "echo run-$$; exec sleep 1000"])
    open_ = apb.AgentAttachOpen(name="phoenix", read_only=True, follow_restarts=True)
    call = client.agent.Attach(iter([apb.AgentServiceAttachRequest(open=open_)]), timeout=TIMEOUT)
    events = iter(call)
    seen = bytearray()

    def next_kind(until: bytes = b"") -> str:
        """The next non-data event's kind (or "until" once `until` is seen); data into `seen`."""
        for r in events:
            kind = r.event.WhichOneof("kind")
            if kind != "data":
                return kind
            seen.extend(r.event.data.data)
            if until and until in seen:
                return "until"
        return "end"

    assert next_kind(b"run-%d" % first.pid) == "until"
    client.agent.Respawn(apb.RespawnRequest(name="phoenix"), timeout=TIMEOUT)
    assert next_kind() == "exited"
    r = next(events)
    assert r.event.WhichOneof("kind") == "started"
    second = r.event.started.pid
    assert second not in (0, first.pid)
    assert next_kind(b"run-%d" % second) == "until"
    client.agent.Remove(apb.AgentServiceRemoveRequest(name="phoenix"), timeout=TIMEOUT)
    assert next_kind() == "exited"
    assert next_kind() == "end"
