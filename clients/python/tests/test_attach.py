"""PTY sessions through the Attach bidi stream (asyncio client), against the real daemon."""

from __future__ import annotations

import asyncio

import grpc
import pytest

import tend_client
from tend_client import process_pb2 as pb

TIMEOUT = 30.0  # deadline of every call
READ_TIMEOUT = 10.0  # waiting for one expected piece of output


class Session:
    """One Attach call: writes requests, reads events into a screen buffer."""

    def __init__(self, call) -> None:
        self.call = call
        self.screen = bytearray()
        self.exited = None

    async def send(self, **kind) -> None:
        await self.call.write(pb.AttachRequest(**kind))

    async def read_event(self) -> pb.ProcessEvent:
        r = await asyncio.wait_for(self.call.read(), READ_TIMEOUT)
        if r is grpc.aio.EOF:
            raise AssertionError(f"Attach ended; screen so far: {bytes(self.screen)!r}")
        ev = r.event
        kind = ev.WhichOneof("kind")
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
            raise AssertionError(f"no {needle!r} within {READ_TIMEOUT}s; screen: {bytes(self.screen)!r}") from None

    async def read_until_exit(self, half_close: bool = True, end_timeout: float = READ_TIMEOUT) -> pb.ExitStatus:
        """Read to the exited event, then check the stream ends there.

        half_close: end our side first (done_writing), as a client that has nothing more
        to send does.
        """
        try:
            while self.exited is None:
                await self.read_event()
        except asyncio.TimeoutError:
            raise AssertionError(f"no exit within {READ_TIMEOUT}s; screen: {bytes(self.screen)!r}") from None
        if half_close:
            await self.call.done_writing()
        try:
            end = await asyncio.wait_for(self.call.read(), end_timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"Attach did not end within {end_timeout}s after the exited event") from None
        assert end is grpc.aio.EOF, f"event after exited: {end}"
        return self.exited


async def open_session(client, pid: str, **open_kw) -> Session:
    s = Session(client.process.Attach(timeout=TIMEOUT))
    await s.send(open=pb.AttachOpen(id=pid, **open_kw))
    return s


async def start_shell(client) -> str:
    st = await client.process.Start(
        pb.StartRequest(spec=pb.ProcessSpec(argv=["sh"], pty=pb.PtySize(rows=24, cols=80), env={"PS1": "$ "})),
        timeout=TIMEOUT,
    )
    assert st.process.HasField("pty") and st.process.pty.rows == 24 and st.process.pty.cols == 80
    return st.process.id


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 4 * TIMEOUT))


def test_attach_pty_echo_resize_exit(daemon):
    async def scenario():
        async with tend_client.connect_async(daemon.addr, token="") as c:
            pid = await start_shell(c)
            s = await open_session(c, pid)

            # The shell runs what we type; the expansion proves it was the shell, not the echo.
            await s.send(input=b"echo hi-$((40+2))\n")
            await s.read_until(b"hi-42")

            # A resize through Attach reaches the terminal (SIGWINCH, TIOCGWINSZ).
            await s.send(resize=pb.PtySize(rows=40, cols=100))
            await s.send(input=b"stty size\n")
            await s.read_until(b"40 100")
            info = await c.process.Get(pb.GetRequest(id=pid), timeout=TIMEOUT)
            assert (info.process.pty.rows, info.process.pty.cols) == (40, 100)

            # The unary RPCs act on the same terminal; the attached session sees the effect.
            await c.process.Resize(pb.ResizeRequest(id=pid, size=pb.PtySize(rows=30, cols=90)), timeout=TIMEOUT)
            await c.process.SendInput(pb.SendInputRequest(id=pid, data=b"stty size\n"), timeout=TIMEOUT)
            await s.read_until(b"30 90")

            # A second, read-only attacher replays from 0 and sees the same output.
            ro = await open_session(c, pid, read_only=True, from_offset=0)
            await ro.read_until(b"hi-42")
            await ro.read_until(b"30 90")

            await s.send(input=b"exit 7\n")
            exit = await s.read_until_exit()
            assert exit.exit_code == 7
            assert (await ro.read_until_exit()).exit_code == 7

    run(scenario())


def test_attach_ends_after_exit_without_half_close(daemon):
    async def scenario():
        async with tend_client.connect_async(daemon.addr, token="") as c:
            pid = await start_shell(c)
            s = await open_session(c, pid)
            await s.send(input=b"exit 3\n")
            assert (await s.read_until_exit(half_close=False, end_timeout=3.0)).exit_code == 3

    run(scenario())


def test_attach_read_only_refuses_input(daemon):
    async def scenario():
        async with tend_client.connect_async(daemon.addr, token="") as c:
            pid = await start_shell(c)
            ro = await open_session(c, pid, read_only=True)
            await ro.send(input=b"echo should-not-run\n")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                while True:
                    await ro.read_event()
                    assert b"should-not-run" not in ro.screen, "a read-only attacher's input was typed"
            assert err.value.code() in (
                grpc.StatusCode.FAILED_PRECONDITION,
                grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.INVALID_ARGUMENT,
            ), err.value
            await c.process.Remove(pb.RemoveRequest(id=pid, force=True), timeout=TIMEOUT)

    run(scenario())


def test_attach_unknown_id(daemon):
    async def scenario():
        async with tend_client.connect_async(daemon.addr, token="") as c:
            s = await open_session(c, "no-such-process")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await s.read_event()
            assert err.value.code() == grpc.StatusCode.NOT_FOUND

    run(scenario())
