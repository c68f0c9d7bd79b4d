"""Lossless readers and kill_on_disconnect through the Python client, against the real daemon.

A lossless Connect (and Run, lossless unless ``observer=True``) holds a fast writer back
rather than drop bytes; a Run (unless ``kill_on_disconnect=False``) or an Attach with
``kill_on_disconnect=True`` stops its process when the call goes away.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

import tend_client
from tend_client import process_pb2 as pb
from test_process import Events, sh

TIMEOUT = 60.0  # deadline of every call
# A small ring and no head: a reader that pauses falls far more than a ring's length behind
# a writer of SEQ_LINES lines (about 20 MB).
SMALL_RING = ("--head-bytes", "0", "--tail-bytes", "65536")
SEQ_LINES = 2_700_000


def seq_output(n: int) -> bytes:
    """What ``seq 1 n`` prints."""
    return "".join(f"{i}\n" for i in range(1, n + 1)).encode()


def check_lossless(evs: Events, want: bytes) -> None:
    assert not evs.gaps, f"a lossless reader got {len(evs.gaps)} gap event(s), the first {evs.gaps[0]}"
    got = bytes(evs.data[pb.STREAM_STDOUT])
    assert evs.first_offset.get(pb.STREAM_STDOUT) == 0
    if got != want:
        i = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        raise AssertionError(f"stdout: {len(got)} bytes, want {len(want)}; they differ from byte {i}")
    assert evs.exited.HasField("exit_code") and evs.exited.exit_code == 0, evs.exited


def read_until(call, evs: Events, want: bytes) -> None:
    while not bytes(evs.data[pb.STREAM_STDOUT]).endswith(want):
        evs.add(next(call).event)
        assert not evs.gaps, evs.gaps


def test_lossless_connect_holds_the_writer(make_daemon):
    d = make_daemon(*SMALL_RING)
    with d.connect() as client:
        # The process floods only after a line on stdin: the Connect is surely in place once it
        # has seen "ready". The daemon's pipe read that was already waiting then (its room asked
        # for before the hold existed) must not overrun the ring either.
        st = client.process.Start(
            pb.StartRequest(spec=sh(f"echo ready; read a; exec seq 1 {SEQ_LINES}", stdin=True)),
            timeout=TIMEOUT,
        )
        pid = st.process.id
        call = client.process.Connect(
            pb.ConnectRequest(id=pid, stream=pb.STREAM_STDOUT, lossless=True), timeout=TIMEOUT
        )
        evs = Events()
        for want in (b"ready\n",):
            read_until(call, evs, want)
            client.process.SendInput(pb.SendInputRequest(id=pid, data=b"go\n"), timeout=TIMEOUT)

        # Fall behind: unread, the writer is held (it cannot get far past the ring).
        time.sleep(1.0)
        got = client.process.Get(pb.GetRequest(id=pid), timeout=TIMEOUT)
        assert got.process.state == pb.PROCESS_STATE_RUNNING, "the writer finished while its lossless reader read nothing"

        for r in call:
            evs.add(r.event)
        assert evs.exited is not None, evs.kinds[-5:]
        check_lossless(evs, b"ready\n" + seq_output(SEQ_LINES))


def test_run_is_lossless_by_default(make_daemon):
    d = make_daemon(*SMALL_RING)
    with d.connect() as client:
        evs = Events()
        paused = False
        for r in client.process.Run(pb.RunRequest(spec=sh(f"seq 1 {SEQ_LINES}")), timeout=TIMEOUT):
            if not paused and r.event.WhichOneof("kind") == "data":
                paused = True
                time.sleep(1.0)
            evs.add(r.event)
        assert evs.exited is not None
        check_lossless(evs, seq_output(SEQ_LINES))


def test_observer_replay_gets_a_gap(make_daemon):
    d = make_daemon(*SMALL_RING)
    with d.connect() as client:
        run = Events.collect(
            client.process.Run(pb.RunRequest(spec=sh(f"seq 1 {SEQ_LINES}"), observer=True), timeout=TIMEOUT)
        )
        # Connect is an observer unless lossless=True; replaying from 0 through a 64 KiB ring
        # after the fact must say what was lost.
        evs = Events.collect(
            client.process.Connect(pb.ConnectRequest(id=run.started.id, stream=pb.STREAM_STDOUT), timeout=TIMEOUT)
        )
        assert evs.gaps, "no gap event"
        assert evs.gaps[0].stream == pb.STREAM_STDOUT


def run_until_up(client, req: pb.RunRequest):
    """Start a Run and read it until the script printed "up"; returns (call, process id)."""
    call = client.process.Run(req, timeout=TIMEOUT)
    evs = Events()
    for r in call:
        evs.add(r.event)
        if b"up" in evs.data[pb.STREAM_STDOUT]:
            return call, evs.started.id
    raise AssertionError(f"Run ended before printing up: {evs.kinds}")


def test_cancelled_run_kills_the_process(make_daemon):
    d = make_daemon("--grace-ms", "2000")
    with d.connect() as client:
        call, pid = run_until_up(client, pb.RunRequest(spec=sh("echo up; exec sleep 60")))
        began = time.monotonic()
        call.cancel()
        w = client.process.Wait(pb.WaitRequest(id=pid, timeout_ms=10_000), timeout=TIMEOUT)
        assert not w.timed_out, f"the process outlived its cancelled Run by 10s: {w.process}"
        assert w.process.exit.signal_name == "SIGTERM", w.process.exit
        assert time.monotonic() - began < 5.0


def test_run_without_kill_on_disconnect_outlives_the_call(daemon, client):
    req = pb.RunRequest(spec=sh("echo up; exec sleep 60"), kill_on_disconnect=False)
    assert req.HasField("kill_on_disconnect")
    call, pid = run_until_up(client, req)
    call.cancel()
    w = client.process.Wait(pb.WaitRequest(id=pid, timeout_ms=1000), timeout=TIMEOUT)
    assert w.timed_out and w.process.state == pb.PROCESS_STATE_RUNNING, w.process
    client.process.Signal(pb.SignalRequest(id=pid, signal="KILL"), timeout=TIMEOUT)


@pytest.mark.parametrize("kill", [False, True])
def test_attach_kill_on_disconnect(make_daemon, kill):
    d = make_daemon("--grace-ms", "2000")

    async def scenario():
        async with tend_client.connect_async(d.addr, token="") as client:
            st = await client.process.Start(pb.StartRequest(spec=sh("echo up; exec sleep 60")), timeout=TIMEOUT)
            pid = st.process.id
            call = client.process.Attach(timeout=TIMEOUT)
            await call.write(
                pb.AttachRequest(open=pb.AttachOpen(id=pid, from_offset=0, lossless=True, kill_on_disconnect=kill))
            )
            seen = b""
            while b"up" not in seen:
                r = await asyncio.wait_for(call.read(), 10.0)
                assert r is not grpc.aio.EOF
                seen += r.event.data.data
            call.cancel()
            w = await client.process.Wait(pb.WaitRequest(id=pid, timeout_ms=1500), timeout=TIMEOUT)
            if kill:
                assert not w.timed_out and w.process.exit.signal_name == "SIGTERM", w.process
            else:
                assert w.timed_out, f"without kill_on_disconnect the process stopped with its Attach: {w.process}"
                await client.process.Signal(pb.SignalRequest(id=pid, signal="KILL"), timeout=TIMEOUT)

    asyncio.run(asyncio.wait_for(scenario(), 2 * TIMEOUT))


def test_cannot_execute_carries_the_shell_exit_code(client, tmp_path):
    not_executable = tmp_path / "script"
    not_executable.write_text("#!/bin/sh\necho hi\n")
    not_executable.chmod(0o644)
    for argv0, code, exit_code in (
        ("/nonexistent/program", grpc.StatusCode.NOT_FOUND, "127"),
        (str(not_executable), grpc.StatusCode.PERMISSION_DENIED, "126"),
    ):
        with pytest.raises(grpc.RpcError) as e:
            client.process.Start(pb.StartRequest(spec=pb.ProcessSpec(argv=[argv0])), timeout=TIMEOUT)
        assert e.value.code() == code, e.value
        assert dict(e.value.trailing_metadata() or ()).get("tend-exit-code") == exit_code

        call = client.process.Run(pb.RunRequest(spec=pb.ProcessSpec(argv=[argv0])), timeout=TIMEOUT)
        with pytest.raises(grpc.RpcError):
            list(call)
        assert call.code() == code
        assert dict(call.trailing_metadata() or ()).get("tend-exit-code") == exit_code
