"""ProcessService through the Python client (sync and asyncio), against the real daemon."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Dict, Iterable, Optional

import grpc
import pytest

import tend_client
from conftest import free_port
from tend_client import process_pb2 as pb

TIMEOUT = 30.0  # deadline of every call


def sh(script: str, **kw) -> pb.ProcessSpec:
    return pb.ProcessSpec(argv=["sh", "-c", script], **kw)


class Events:
    """What a Run/Connect/Attach stream delivered, checked to end with exited."""

    def __init__(self) -> None:
        self.started: Optional[pb.ProcessInfo] = None
        self.data: Dict[int, bytearray] = defaultdict(bytearray)
        self.first_offset: Dict[int, int] = {}
        self.gaps: list = []
        self.exited: Optional[pb.ExitStatus] = None
        self.kinds: list = []

    def add(self, ev: pb.ProcessEvent) -> None:
        assert self.exited is None, f"event after exited: {ev}"
        kind = ev.WhichOneof("kind")
        self.kinds.append(kind)
        if kind == "started":
            self.started = ev.started
        elif kind == "data":
            self.first_offset.setdefault(ev.data.stream, ev.data.offset)
            self.data[ev.data.stream] += ev.data.data
        elif kind == "gap":
            self.gaps.append(ev.gap)
        elif kind == "exited":
            self.exited = ev.exited

    @classmethod
    def collect(cls, responses: Iterable) -> "Events":
        evs = cls()
        for r in responses:
            evs.add(r.event)
        assert evs.exited is not None, f"stream ended without exited: {evs.kinds}"
        return evs

    def text(self, stream: int) -> str:
        return bytes(self.data.get(stream, b"")).decode()


def test_run_streams_to_exit(client):
    evs = Events.collect(
        client.process.Run(pb.RunRequest(spec=sh("printf hello; printf oops >&2; exit 3")), timeout=TIMEOUT)
    )
    assert evs.kinds[0] == "started" and evs.kinds[-1] == "exited"
    assert evs.started.id and evs.started.pid > 0
    assert evs.text(pb.STREAM_STDOUT) == "hello"
    assert evs.text(pb.STREAM_STDERR) == "oops"
    assert evs.exited.HasField("exit_code") and evs.exited.exit_code == 3
    assert not evs.exited.HasField("signal")


def test_start_then_connect_replays_from_offset(client):
    resp = client.process.Start(pb.StartRequest(spec=sh("printf 0123456789"), wait_timeout_ms=20_000), timeout=TIMEOUT)
    assert not resp.timed_out and resp.process.state == pb.PROCESS_STATE_EXITED
    evs = Events.collect(
        client.process.Connect(
            pb.ConnectRequest(id=resp.process.id, from_offset=4, stream=pb.STREAM_STDOUT), timeout=TIMEOUT
        )
    )
    assert evs.text(pb.STREAM_STDOUT) == "456789"
    assert evs.first_offset[pb.STREAM_STDOUT] == 4
    assert evs.exited.exit_code == 0

    # no_follow on a running process: what is retained now, and no exited event.
    bg = client.process.Start(
        pb.StartRequest(spec=sh("printf abc; cat >/dev/null; printf def", stdin=True)), timeout=TIMEOUT
    )
    assert bg.process.state == pb.PROCESS_STATE_RUNNING
    pid = bg.process.id
    # Wait (bounded) until "abc" is in the log, by polling Get.
    for _ in range(200):
        info = client.process.Get(pb.GetRequest(id=pid), timeout=TIMEOUT).process
        if any(s.stream == pb.STREAM_STDOUT and s.total_bytes >= 3 for s in info.streams):
            break
        client.process.Wait(pb.WaitRequest(id=pid, timeout_ms=20), timeout=TIMEOUT)
    else:
        pytest.fail(f"abc never reached the log: {info}")
    snap = list(
        client.process.Connect(
            pb.ConnectRequest(id=pid, from_offset=1, stream=pb.STREAM_STDOUT, no_follow=True), timeout=TIMEOUT
        )
    )
    assert b"".join(r.event.data.data for r in snap) == b"bc"
    assert all(r.event.WhichOneof("kind") != "exited" for r in snap)

    # Follow: replay then live output, to the exit.
    follow = client.process.Connect(pb.ConnectRequest(id=pid, from_offset=2, stream=pb.STREAM_STDOUT), timeout=TIMEOUT)
    first = next(follow)
    assert first.event.data.data == b"c" and first.event.data.offset == 2
    client.process.CloseInput(pb.CloseInputRequest(id=pid), timeout=TIMEOUT)
    evs = Events.collect(follow)
    assert "c" + evs.text(pb.STREAM_STDOUT) == "cdef"


def test_signal_and_wait(client):
    st = client.process.Start(pb.StartRequest(spec=pb.ProcessSpec(argv=["sleep", "60"], name="sleeper")), timeout=TIMEOUT)
    client.process.Signal(pb.SignalRequest(id="sleeper", signal="SIGTERM"), timeout=TIMEOUT)
    w = client.process.Wait(pb.WaitRequest(id=st.process.id, timeout_ms=10_000), timeout=TIMEOUT)
    assert not w.timed_out
    assert w.process.exit.HasField("signal") and w.process.exit.signal == 15
    assert w.process.exit.signal_name == "SIGTERM"
    assert not w.process.exit.HasField("exit_code")

    # The whole process group by default: the shell's background child dies too.
    st = client.process.Start(pb.StartRequest(spec=sh("sleep 60 & echo $!; wait")), timeout=TIMEOUT)
    w = client.process.Wait(pb.WaitRequest(id=st.process.id, timeout_ms=100), timeout=TIMEOUT)
    assert w.timed_out and w.process.state == pb.PROCESS_STATE_RUNNING
    stream = client.process.Connect(pb.ConnectRequest(id=st.process.id, stream=pb.STREAM_STDOUT), timeout=TIMEOUT)
    child = int(next(stream).event.data.data)
    stream.cancel()
    client.process.Signal(pb.SignalRequest(id=st.process.id, signal="TERM"), timeout=TIMEOUT)
    w = client.process.Wait(pb.WaitRequest(id=st.process.id, timeout_ms=10_000), timeout=TIMEOUT)
    assert not w.timed_out and w.process.state == pb.PROCESS_STATE_EXITED
    assert not w.process.exit.output_drain_timed_out, "the background sleep outlived the group signal"
    deadline = time.monotonic() + 5
    while pid_alive(child):
        assert time.monotonic() < deadline, f"grandchild {child} still alive after SIGTERM to the group"
        time.sleep(0.02)


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie (the daemon, a subreaper, reaps orphans)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_output_head_and_tail(client):
    want = "".join(f"{i}\n" for i in range(1, 20001))
    st = client.process.Start(
        pb.StartRequest(
            spec=pb.ProcessSpec(argv=["seq", "1", "20000"]),
            wait_timeout_ms=20_000,
            output=pb.OutputOptions(stream=pb.STREAM_STDOUT, head_bytes=64, tail_bytes=64),
        ),
        timeout=TIMEOUT,
    )
    assert not st.timed_out and len(st.output) == 1 and st.output[0].truncated
    out = client.process.Output(
        pb.OutputRequest(
            id=st.process.id, options=pb.OutputOptions(stream=pb.STREAM_STDOUT, head_bytes=100, tail_bytes=100)
        ),
        timeout=TIMEOUT,
    )
    (view,) = out.output
    assert view.stream == pb.STREAM_STDOUT
    assert view.total_bytes == len(want)
    assert view.truncated
    assert view.text.startswith("1\n2\n3\n") and view.text.endswith("19999\n20000\n")
    assert len(want) - 200 <= view.omitted_bytes < len(want)

    # Defaults: everything fits.
    st = client.process.Start(pb.StartRequest(spec=sh("echo out; echo err >&2"), wait_timeout_ms=20_000), timeout=TIMEOUT)
    views = {v.stream: v for v in st.output}
    assert views[pb.STREAM_STDOUT].text == "out\n" and not views[pb.STREAM_STDOUT].truncated
    assert views[pb.STREAM_STDERR].text == "err\n"


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.process.Get(pb.GetRequest(id="no-such-process"), timeout=TIMEOUT),
        lambda c: c.process.Signal(pb.SignalRequest(id="no-such-process"), timeout=TIMEOUT),
        lambda c: c.process.Output(pb.OutputRequest(id="no-such-process"), timeout=TIMEOUT),
        lambda c: c.process.Wait(pb.WaitRequest(id="no-such-process", timeout_ms=10), timeout=TIMEOUT),
        lambda c: list(c.process.Connect(pb.ConnectRequest(id="no-such-process"), timeout=TIMEOUT)),
    ],
    ids=["Get", "Signal", "Output", "Wait", "Connect"],
)
def test_unknown_id_is_not_found(client, call):
    with pytest.raises(grpc.RpcError) as err:
        call(client)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND, err.value


def test_tcp_with_token(make_daemon, monkeypatch):
    port = free_port()
    d = make_daemon("--listen", f"tcp://127.0.0.1:{port}")
    token_file = d.dir / "token"
    assert token_file.stat().st_mode & 0o777 == 0o600, "the token file must be private"
    token = token_file.read_text().strip()
    assert token
    addr = f"tcp://127.0.0.1:{port}"

    with tend_client.connect(addr, token=token) as c:
        c.process.List(pb.ListRequest(), timeout=TIMEOUT)
    for bad in ("wrong", ""):
        with tend_client.connect(addr, token=bad) as c:
            with pytest.raises(grpc.RpcError) as err:
                c.process.List(pb.ListRequest(), timeout=TIMEOUT)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, (bad, err.value)

    # TEND_ADDR and TEND_TOKEN when connect() gets neither; all four call shapes carry it.
    monkeypatch.setenv("TEND_ADDR", addr)
    monkeypatch.setenv("TEND_TOKEN", token)
    with tend_client.connect() as c:
        assert c.address == tend_client.Address("tcp", f"127.0.0.1:{port}")
        evs = Events.collect(c.process.Run(pb.RunRequest(spec=sh("echo via-tcp")), timeout=TIMEOUT))
        assert evs.text(pb.STREAM_STDOUT) == "via-tcp\n"

    async def run_async():
        async with tend_client.connect_async() as c:
            st = await c.process.Start(pb.StartRequest(spec=sh("echo async"), wait_timeout_ms=20_000), timeout=TIMEOUT)
            evs = Events()
            async for r in c.process.Connect(pb.ConnectRequest(id=st.process.id), timeout=TIMEOUT):
                evs.add(r.event)
            return evs

    evs = asyncio.run(asyncio.wait_for(run_async(), TIMEOUT))
    assert evs.text(pb.STREAM_STDOUT) == "async\n" and evs.exited.exit_code == 0

    async def unauthenticated():
        c = await tend_client.connect_async(addr, token="wrong")
        try:
            await c.process.List(pb.ListRequest(), timeout=TIMEOUT)
        finally:
            await c.close()

    with pytest.raises(grpc.aio.AioRpcError) as err:
        asyncio.run(unauthenticated())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_default_socket_location(daemon, monkeypatch):
    monkeypatch.delenv("TEND_ADDR", raising=False)
    monkeypatch.delenv("TEND_TOKEN", raising=False)
    monkeypatch.setenv("TEND_STATE_DIR", str(daemon.dir))
    with tend_client.connect() as c:
        assert c.address == tend_client.Address("unix", str(daemon.sock))
        c.wait_ready(timeout=5)
        st = c.process.Start(pb.StartRequest(spec=sh("true"), request_id="req-1"), timeout=TIMEOUT)
        again = c.process.Start(pb.StartRequest(spec=sh("true"), request_id="req-1"), timeout=TIMEOUT)
        assert again.process.id == st.process.id, "a retried Start with the same request_id runs once"
        ids = [p.id for p in c.process.List(pb.ListRequest(), timeout=TIMEOUT).processes]
        assert ids.count(st.process.id) == 1
        c.process.Wait(pb.WaitRequest(id=st.process.id, timeout_ms=10_000), timeout=TIMEOUT)
        c.process.Remove(pb.RemoveRequest(id=st.process.id), timeout=TIMEOUT)
        with pytest.raises(grpc.RpcError) as err:
            c.process.Get(pb.GetRequest(id=st.process.id), timeout=TIMEOUT)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert daemon.sock.stat().st_mode & 0o777 == 0o600, "the socket must be private"

