"""An MCP server (stdio) that gives LLM agents tend's process tools.

Run it with ``python -m tend_client.mcp`` (or the ``tend-mcp`` script). It talks to the
daemon at ``$TEND_ADDR`` (else the default socket) with ``$TEND_TOKEN``, through the
asyncio client, and reports the tend_client version as its own. Tools:

- ``run_command``: run a shell command in the foreground, with a timeout; returns the exit
  code, wall time and a head+tail view of the output. On timeout the command keeps running
  in the background and its id is returned. ``environment`` runs it in an environment of
  the daemon's RunnerService (a Docker container, a Nix shell) instead of on the host.
- ``start_background``: start a command and return its id at once (``environment`` too), or,
  with a readiness check (``ready_port``, ``ready_http_path``, ``ready_log_regex``,
  ``ready_command``), once it is ready.
- ``read_output``: the head+tail view of a process's output (optionally waiting for it).
- ``send_input``: write text to a process's stdin (or terminal), optionally closing it.
- ``send_signal``: signal a process's group (SIGTERM by default).
- ``list_processes``: the daemon's most recent processes, running and exited, with a count
  of the older ones left out.
- ``list_environments``: the environments commands can run in ("native", the host, first).
- ``list_agents``: the daemon's agents (named interactive programs in terminals).
- ``nudge_agent``: type a message into an agent's terminal and press Enter, at once or once
  it is idle.
- ``agent_output``: the last output of an agent's terminal, optionally after waiting for it
  to go idle, terminal escape sequences stripped unless asked to keep them.

Output views: the head and the tail of each stream, cut at a line boundary when one is
within LINE_SNAP_BYTES of the cut (the omission marker says so); output that is not text
(NUL bytes, invalid UTF-8) is described in one line instead of being shown.

Imports are absolute on purpose: this module lives in ``tend_client`` beside the
``tend_client.mcp`` package, and the MCP SDK is the top-level ``mcp`` package.
"""

from __future__ import annotations

import codecs
import re
import shlex
from typing import Annotated, Any, Dict, List, Literal, Optional

import grpc

from tend_client.mcp import MISSING_MCP

try:
    import mcp  # noqa: F401
except ImportError:
    raise ImportError(MISSING_MCP, name="mcp") from None

try:  # mcp >= 2: FastMCP was renamed MCPServer.
    from mcp.server.mcpserver import MCPServer as _Server
    from mcp.server.mcpserver.exceptions import ToolError
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP as _Server
    from mcp.server.fastmcp.exceptions import ToolError
from pydantic import Field  # a dependency of mcp

from tend_client import AsyncClient, __version__, connect_async
from tend_client import agent_pb2 as apb
from tend_client import process_pb2 as pb
from tend_client import runner_pb2 as rpb

# A foreground command longer than this is better started in the background.
MAX_TIMEOUT_SECONDS = 24 * 3600.0
# Extra time the gRPC deadline gives a foreground Start beyond its own timeout.
_RPC_SLACK_SECONDS = 30.0
# Deadline of the quick calls (everything but foreground Start and Wait).
_RPC_TIMEOUT_SECONDS = 30.0

# Output views: bytes kept from the start and from the end of a stream by default (the
# daemon's defaults too), the most a caller may ask for, and how far a cut may move to land
# on a line boundary.
DEFAULT_VIEW_BYTES = 16384
MAX_VIEW_BYTES = 1 << 20
LINE_SNAP_BYTES = 256
# Lines longer than this are cut in the middle (the daemon's default).
MAX_LINE_BYTES = 2048
# list_processes shows at most this many (the most recent), 50 by default.
DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 500

StreamName = Literal["all", "stdout", "stderr", "terminal"]
StateName = Literal["all", "running", "exited"]
SignalName = Literal[
    "SIGTERM",
    "SIGINT",
    "SIGKILL",
    "SIGHUP",
    "SIGQUIT",
    "SIGUSR1",
    "SIGUSR2",
    "SIGSTOP",
    "SIGCONT",
    "SIGWINCH",
    "SIGALRM",
]

_STREAM_NAMES = {
    pb.STREAM_STDOUT: "stdout",
    pb.STREAM_STDERR: "stderr",
    pb.STREAM_PTY: "terminal",
}
_STREAMS_BY_NAME = {
    "all": pb.STREAM_UNSPECIFIED,
    "stdout": pb.STREAM_STDOUT,
    "stderr": pb.STREAM_STDERR,
    "terminal": pb.STREAM_PTY,
}
_STATES_BY_NAME = {
    "all": pb.PROCESS_STATE_UNSPECIFIED,
    "running": pb.PROCESS_STATE_RUNNING,
    "exited": pb.PROCESS_STATE_EXITED,
}

INSTRUCTIONS = """\
Run commands on this machine through the tend daemon. Prefer run_command for commands that
finish (builds, tests, git): it waits up to timeout_seconds and returns the exit code and
the head and tail of the output. Use start_background for servers and watchers, then
read_output to see what they printed, send_input to type into them, and send_signal to stop
them. Processes are identified by the id these tools return. Output views keep the first
and last bytes of each stream, cut at line boundaries; notes say what was left out.
run_command and start_background take an environment (see list_environments: a Docker
container or a Nix shell the daemon prepared) to run the command there instead of on this
machine. Agents
are named interactive programs (coding agents, REPLs, shells) in their own terminals:
list_agents shows them, nudge_agent types a message into one, agent_output reads what its
terminal showed last."""


def _make_server():
    """The server, reporting the tend_client version in its initialization (server info)."""
    import inspect

    if "version" in inspect.signature(_Server.__init__).parameters:
        return _Server("tend", instructions=INSTRUCTIONS, version=__version__)
    # mcp 1.x FastMCP takes no version: it lives on the low-level server.
    s = _Server("tend", instructions=INSTRUCTIONS)
    s._mcp_server.version = __version__
    return s


server = _make_server()

_client: Optional[AsyncClient] = None


def _get_client() -> AsyncClient:
    # Created on first use, inside the server's event loop: a grpc.aio channel belongs
    # to the loop it was made in.
    global _client
    if _client is None:
        _client = connect_async()
    return _client


class TendError(ToolError):
    """A daemon call failed; the message names the gRPC code and the daemon's reason.

    A ToolError, so the SDK hands the message to the model (any other exception reaches
    it only as "Error executing tool ...").
    """


def _rpc_error(e: grpc.aio.AioRpcError) -> TendError:
    return TendError(f"tend daemon: {e.code().name}: {e.details()}")


async def _call(rpc, request, timeout: float = _RPC_TIMEOUT_SECONDS):
    try:
        return await rpc(request, timeout=timeout)
    except grpc.aio.AioRpcError as e:
        raise _rpc_error(e) from None


def _exit_fields(exit: pb.ExitStatus) -> Dict[str, Any]:
    out: Dict[str, Any] = {"wall_time_ms": exit.wall_duration_ms}
    if exit.HasField("exit_code"):
        out["exit_code"] = exit.exit_code
    if exit.HasField("signal"):
        out["signal"] = exit.signal_name or str(exit.signal)
        if exit.core_dumped:
            out["core_dumped"] = True
    if exit.output_drain_timed_out:
        out["note"] = (
            "a background child kept the output open after the command exited; "
            "output written after that was not recorded"
        )
    return out


def _decode(data: bytes) -> str:
    """UTF-8 text of data; an incomplete character at its end (a cut) is dropped."""
    return codecs.getincrementaldecoder("utf-8")("replace").decode(data, final=False)


def _is_text(data: bytes) -> bool:
    """Whether data reads as text: no NUL bytes, valid UTF-8 (an incomplete character at the
    end, where a view may cut, is allowed)."""
    if b"\0" in data:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _skip_continuation(data: bytes) -> bytes:
    """data without the UTF-8 continuation bytes a cut left at its start."""
    i = 0
    while i < min(3, len(data)) and 0x80 <= data[i] < 0xC0:
        i += 1
    return data[i:]


def _binary_note(total: int, sample: bytes) -> str:
    return (
        f"[binary output: {total} bytes; not shown as text (NUL bytes or invalid UTF-8); "
        f"first bytes: {sample[:16].hex(' ')}]"
    )


class _Cut:
    """Cuts lines longer than MAX_LINE_BYTES, as the daemon does, counting what it removed."""

    def __init__(self) -> None:
        self.lines = 0
        self.bytes = 0

    def text(self, data: bytes) -> str:
        out = []
        for line in data.split(b"\n"):
            if len(line) > MAX_LINE_BYTES:
                dropped = len(line) - MAX_LINE_BYTES
                self.lines += 1
                self.bytes += dropped
                out.append(_decode(line[:MAX_LINE_BYTES]) + f" [... {dropped} bytes cut]")
            else:
                out.append(_decode(line))
        return "\n".join(out)


async def _read_bytes(client: AsyncClient, id: str, stream: int, start: int, end: int) -> bytes:
    """The retained bytes [start, end) of one stream, up to the first byte no longer held."""
    if end <= start:
        return b""
    call = client.process.Connect(
        pb.ConnectRequest(id=id, from_offset=start, stream=stream, no_follow=True),
        timeout=_RPC_TIMEOUT_SECONDS,
    )
    buf = bytearray()
    try:
        async for r in call:
            kind = r.event.WhichOneof("kind")
            if kind == "exited":
                break
            if kind != "data" or r.event.data.stream != stream:
                continue  # gaps show up as data past the position reached
            d = r.event.data
            pos = start + len(buf)
            if d.offset > pos:
                break
            buf += d.data[pos - d.offset : end - d.offset]
            if start + len(buf) >= end:
                break
    except grpc.aio.AioRpcError as e:
        raise _rpc_error(e) from None
    finally:
        call.cancel()
    return bytes(buf)


async def _raw_view(
    client: AsyncClient, id: str, info: pb.StreamInfo, head_bytes: int, tail_bytes: int
) -> Dict[str, Any]:
    """The view of one stream built from its bytes: head and tail as the daemon picks them,
    each cut moved to a line boundary within LINE_SNAP_BYTES, or a note for binary output."""
    total = info.total_bytes
    # The head and the tail as the daemon's view takes them.
    lost = info.tail_offset > info.head_bytes
    head_end = min(total, head_bytes)
    if lost:
        head_end = min(head_end, info.head_bytes)
    tail_start = max(total - tail_bytes, head_end)
    if lost:
        tail_start = max(tail_start, info.tail_offset)
    if tail_start <= head_end:
        head, tail = await _read_bytes(client, id, info.stream, 0, total), b""
    else:
        head = await _read_bytes(client, id, info.stream, 0, head_end)
        # One byte before the tail, to know whether the tail starts a line.
        before = tail_start - 1 if tail_start - 1 >= max(head_end, info.tail_offset if lost else 0) else tail_start
        tail = await _read_bytes(client, id, info.stream, before, total)
        tail_at_line = tail_start == 0
        if before < tail_start and tail:
            tail_at_line, tail = tail[:1] == b"\n", tail[1:]
    omitted = total - len(head) - len(tail)
    if not (_is_text(head) and _is_text(_skip_continuation(tail))):
        return {"text": _binary_note(total, head or tail), "total": total, "omitted": 0, "binary": True}
    head_snapped = tail_snapped = False
    if omitted:
        if head and not head.endswith(b"\n"):
            i = head.rfind(b"\n", max(0, len(head) - LINE_SNAP_BYTES))
            if i >= 0:
                head, head_snapped = head[: i + 1], True
        if tail and not tail_at_line:
            j = tail.find(b"\n", 0, LINE_SNAP_BYTES)
            if 0 <= j < len(tail) - 1:
                tail, tail_snapped = tail[j + 1 :], True
            else:
                tail = _skip_continuation(tail)
        omitted = total - len(head) - len(tail)
    cut = _Cut()
    text = cut.text(head)
    if omitted:
        if text and not text.endswith("\n"):
            text += "\n"
        if (not head or head.endswith(b"\n")) and (tail_at_line or tail_snapped):
            where = "; cut at line boundaries"
        elif head_snapped:
            where = "; head cut at a line boundary"
        elif tail_snapped:
            where = "; tail cut at a line boundary"
        else:
            where = ""
        text += f"[... {omitted} bytes omitted{where} ...]\n"
    text += cut.text(tail)
    return {
        "text": text,
        "total": total,
        "omitted": omitted,
        "cut_lines": cut.lines,
        "cut_line_bytes": cut.bytes,
        "line_boundaries": head_snapped or tail_snapped,
    }


async def _views(
    client: AsyncClient,
    process: pb.ProcessInfo,
    outputs: List[pb.StreamOutput],
    head_bytes: int = 0,
    tail_bytes: int = 0,
) -> Dict[str, Any]:
    """The output views as {stream name: text}, plus notes on what was left out.

    The daemon's view is used as it is when it is whole text; otherwise (truncated, or
    possibly binary) the view is built from the stream's bytes.
    """
    head_bytes = head_bytes or DEFAULT_VIEW_BYTES
    tail_bytes = tail_bytes or DEFAULT_VIEW_BYTES
    infos = {s.stream: s for s in process.streams}
    out: Dict[str, Any] = {}
    notes: List[str] = []
    for view in outputs:
        name = _STREAM_NAMES.get(view.stream, "output")
        info = infos.get(view.stream)
        if info is None or not (view.truncated or "\ufffd" in view.text or "\0" in view.text):
            out[name] = view.text
            v: Dict[str, Any] = {
                "total": view.total_bytes,
                "omitted": view.omitted_bytes,
                "cut_lines": view.cut_lines,
                "cut_line_bytes": view.cut_line_bytes,
            }
        else:
            v = await _raw_view(client, process.id, info, head_bytes, tail_bytes)
            out[name] = v["text"]
        if v.get("binary"):
            notes.append(f"{name} is binary ({v['total']} bytes): not shown as text")
        elif v["omitted"] or v["cut_lines"]:
            parts = [f"{v['total']} bytes in all"]
            if v["omitted"]:
                parts.append(f"{v['omitted']} bytes omitted between head and tail")
                if v.get("line_boundaries"):
                    parts.append("cuts moved to line boundaries")
            if v["cut_lines"]:
                parts.append(f"{v['cut_lines']} long line(s) cut, {v['cut_line_bytes']} bytes removed")
            notes.append(f"{name} truncated: " + "; ".join(parts))
    if notes:
        out["truncation"] = notes
    return out


def _summary(p: pb.ProcessInfo) -> Dict[str, Any]:
    out: Dict[str, Any] = {
        "id": p.id,
        "command": shlex.join(p.argv),
        "state": "running" if p.state == pb.PROCESS_STATE_RUNNING else "exited",
        "pid": p.pid,
    }
    if p.name:
        out["name"] = p.name
    if p.cwd:
        out["cwd"] = p.cwd
    if p.environment_id and p.environment_id != "native":
        out["environment"] = p.environment_id
    if p.HasField("pty"):
        out["terminal"] = f"{p.pty.rows}x{p.pty.cols}"
    if p.state == pb.PROCESS_STATE_EXITED:
        out.update(_exit_fields(p.exit))
    if p.HasField("usage"):
        u = p.usage
        out["usage"] = {
            "kernel_state": pb.KernelState.Name(u.state).removeprefix("KERNEL_STATE_").lower(),
            "cpu_percent": round(u.cpu_percent, 1),
            "memory_mb": round(u.rss_bytes / (1 << 20), 1),
            "processes": u.processes,
        }
        if u.whole_environment:
            # A container's: the engine's figures for all of it, no kernel state.
            del out["usage"]["kernel_state"]
            out["usage"]["scope"] = "the whole container"
    if p.ports:
        out["listening"] = [f"{l.address}:{l.port}/{l.protocol}" for l in p.ports]
    if p.HasField("readiness"):
        r = p.readiness
        out["readiness"] = pb.ReadinessState.Name(r.state).removeprefix("READINESS_STATE_").lower()
        if r.state == pb.READINESS_STATE_READY:
            out["ready_after_ms"] = r.ready_after_ms
        elif r.last_error:
            out["last_check"] = r.last_error
    return out


def _probe(
    ready_port: int, ready_http_path: str, ready_log_regex: str, ready_command: str
) -> Optional[pb.ReadinessProbe]:
    """The readiness probe start_background's ready_* parameters ask for, if any."""
    if ready_http_path and not ready_port:
        raise ToolError("ready_http_path needs ready_port: the port to send the HTTP GET to")
    given = [bool(ready_port), bool(ready_log_regex), bool(ready_command)]
    if sum(given) > 1:
        raise ToolError("give at most one of ready_port (with ready_http_path), ready_log_regex and ready_command")
    if ready_port and ready_http_path:
        path = ready_http_path if ready_http_path.startswith("/") else "/" + ready_http_path
        return pb.ReadinessProbe(http=pb.HttpProbe(port=ready_port, path=path))
    if ready_port:
        return pb.ReadinessProbe(tcp=pb.TcpProbe(port=ready_port))
    if ready_log_regex:
        return pb.ReadinessProbe(log=pb.LogProbe(pattern=ready_log_regex))
    if ready_command:
        return pb.ReadinessProbe(exec=pb.ExecProbe(argv=["sh", "-c", ready_command]))
    return None


def _spec(command: str, cwd: str, env: Optional[Dict[str, str]], environment: str = "") -> pb.ProcessSpec:
    if not command.strip():
        raise ToolError("command is empty")
    return pb.ProcessSpec(argv=["sh", "-c", command], cwd=cwd, env=env or {}, environment_id=environment)


# Parameters shared by several tools.
ProcessId = Annotated[str, Field(description="The process's id (as returned by run_command or start_background) or its name.")]
Command = Annotated[str, Field(description="The shell command line, run with sh -c.")]
Cwd = Annotated[str, Field(description="Working directory; empty: the daemon's.")]
Env = Annotated[
    Optional[Dict[str, str]],
    Field(description="Environment variables to add or override, name to value."),
]
Environment = Annotated[
    str,
    Field(
        description=(
            "Where to run it: an environment's id or name from list_environments (a Docker "
            'container, a Nix shell); empty or "native": this machine.'
        )
    ),
]


@server.tool()
async def run_command(
    command: Command,
    timeout_seconds: Annotated[
        float,
        Field(description="How long to wait for it to exit, in seconds (at most a day).", gt=0, le=MAX_TIMEOUT_SECONDS),
    ] = 60.0,
    cwd: Cwd = "",
    env: Env = None,
    environment: Environment = "",
) -> Dict[str, Any]:
    """Run a shell command (sh -c) and wait for it, at most timeout_seconds.

    Returns its id, exit_code (or signal), wall_time_ms and the head and tail of stdout and
    stderr, with truncation notes when output was left out. If it is still running after
    timeout_seconds it is NOT killed: the result has status "running" and its id, for
    read_output, send_input and send_signal. environment (an id or name from
    list_environments) runs it in that environment instead of on this machine.
    """
    if not 0 < timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise ToolError(f"timeout_seconds must be in (0, {MAX_TIMEOUT_SECONDS:g}]")
    client = _get_client()
    resp = await _call(
        client.process.Start,
        pb.StartRequest(spec=_spec(command, cwd, env, environment), wait_timeout_ms=max(1, int(timeout_seconds * 1000))),
        timeout=timeout_seconds + _RPC_SLACK_SECONDS,
    )
    p = resp.process
    if resp.timed_out or p.state == pb.PROCESS_STATE_RUNNING:
        return {
            "id": p.id,
            "status": "running",
            "message": (
                f"still running after {timeout_seconds:g}s; it keeps running in the background as "
                f"{p.id}. Use read_output to see its output, send_signal to stop it."
            ),
        }
    result: Dict[str, Any] = {"id": p.id, "status": "exited"}
    if p.environment_id and p.environment_id != "native":
        result["environment"] = p.environment_id
    result.update(_exit_fields(p.exit))
    result.update(await _views(client, p, list(resp.output)))
    return result


@server.tool()
async def start_background(
    command: Command,
    cwd: Cwd = "",
    env: Env = None,
    name: Annotated[str, Field(description="Optional unique name, usable in place of the id.")] = "",
    stdin: Annotated[
        bool, Field(description="Keep standard input open for send_input (otherwise it reads nothing).")
    ] = False,
    terminal: Annotated[
        bool, Field(description="Run it in a pseudo-terminal (for programs that want a TTY; input is open then).")
    ] = False,
    rows: Annotated[int, Field(description="Terminal rows, with terminal=true.", ge=1, le=10000)] = 24,
    cols: Annotated[int, Field(description="Terminal columns, with terminal=true.", ge=1, le=10000)] = 80,
    environment: Environment = "",
    ready_port: Annotated[
        int, Field(description="Wait until this TCP port on localhost accepts connections (0: do not).", ge=0, le=65535)
    ] = 0,
    ready_http_path: Annotated[
        str, Field(description='With ready_port: wait until an HTTP GET of this path (e.g. "/health") answers 2xx or 3xx.')
    ] = "",
    ready_log_regex: Annotated[
        str, Field(description='Wait until a line of its output matches this regular expression (e.g. "listening on").')
    ] = "",
    ready_command: Annotated[
        str, Field(description="Wait until this shell command (sh -c, run beside it) exits 0.")
    ] = "",
    ready_timeout_seconds: Annotated[
        float, Field(description="How long to wait for it to be ready, in seconds.", gt=0, le=MAX_TIMEOUT_SECONDS)
    ] = 60.0,
) -> Dict[str, Any]:
    """Start a shell command (sh -c) in the background and return its id.

    stdin=true keeps its standard input open for send_input (otherwise it reads nothing).
    terminal=true runs it in a pseudo-terminal of rows x cols (for programs that want a
    TTY; input is always open then). name is an optional unique name usable as its id.
    environment (an id or name from list_environments) runs it there instead of on this
    machine.

    To start a server and wait until it is up, give one readiness check: ready_port (a TCP
    port accepting; add ready_http_path for an HTTP answer), ready_log_regex (a line it
    prints) or ready_command (a command exiting 0). It then returns once ready ("readiness":
    "ready"), or when it exited first ("readiness": "failed", with its exit code and
    output), or after ready_timeout_seconds ("readiness": "pending", with the last check's
    error; it keeps running).
    """
    spec = _spec(command, cwd, env, environment)
    spec.name = name
    spec.stdin = stdin
    if terminal:
        spec.pty.CopyFrom(pb.PtySize(rows=rows, cols=cols))
    probe = _probe(ready_port, ready_http_path, ready_log_regex, ready_command)
    if probe is not None:
        if not 0 < ready_timeout_seconds <= MAX_TIMEOUT_SECONDS:
            raise ToolError(f"ready_timeout_seconds must be in (0, {MAX_TIMEOUT_SECONDS:g}]")
        spec.readiness.CopyFrom(probe)
    client = _get_client()
    resp = await _call(client.process.Start, pb.StartRequest(spec=spec))
    if probe is None:
        return _summary(resp.process)
    waited = await _call(
        client.process.WaitReady,
        pb.WaitReadyRequest(id=resp.process.id, timeout_ms=max(1, int(ready_timeout_seconds * 1000))),
        timeout=ready_timeout_seconds + _RPC_SLACK_SECONDS,
    )
    result = _summary(waited.process)
    if waited.result == pb.WAIT_READY_RESULT_FAILED:
        result["message"] = "it exited before it was ready; its output is below"
        result.update(await _views(client, waited.process, list(waited.output)))
    elif waited.result == pb.WAIT_READY_RESULT_TIMED_OUT:
        result["message"] = (
            f"not ready after {ready_timeout_seconds:g}s; it keeps running. read_output shows what it "
            "printed; send_signal stops it."
        )
    return result


@server.tool()
async def read_output(
    id: ProcessId,
    stream: Annotated[
        StreamName,
        Field(description='Which stream: "all", "stdout", "stderr" or "terminal" (a pseudo-terminal\'s output).'),
    ] = "all",
    wait_seconds: Annotated[
        float, Field(description="First wait up to this long for the process to exit (0: do not wait).", ge=0, le=MAX_TIMEOUT_SECONDS)
    ] = 0.0,
    head_bytes: Annotated[
        int, Field(description=f"Bytes kept from the start of each stream (0: {DEFAULT_VIEW_BYTES}).", ge=0, le=MAX_VIEW_BYTES)
    ] = 0,
    tail_bytes: Annotated[
        int, Field(description=f"Bytes kept from the end of each stream (0: {DEFAULT_VIEW_BYTES}).", ge=0, le=MAX_VIEW_BYTES)
    ] = 0,
) -> Dict[str, Any]:
    """Read a process's output: the head and tail of each stream, with truncation notes.

    The cuts move to a line boundary when one is near (the omission marker says so);
    binary output is described, not shown. A running process also shows what its tree
    uses ("usage": kernel state such as sleeping or stopped, CPU %, memory in MB,
    processes), the ports it listens on ("listening") and, if it was started with a
    readiness check, whether it is ready: enough to tell working from stuck.
    """
    if stream not in _STREAMS_BY_NAME:
        raise ToolError(f"stream must be one of {sorted(_STREAMS_BY_NAME)}")
    client = _get_client()
    if wait_seconds > 0:
        await _call(
            client.process.Wait,
            pb.WaitRequest(id=id, timeout_ms=max(1, int(wait_seconds * 1000))),
            timeout=wait_seconds + _RPC_SLACK_SECONDS,
        )
    resp = await _call(
        client.process.Output,
        pb.OutputRequest(
            id=id,
            options=pb.OutputOptions(stream=_STREAMS_BY_NAME[stream], head_bytes=head_bytes, tail_bytes=tail_bytes),
        ),
    )
    result = _summary(resp.process)
    result.update(await _views(client, resp.process, list(resp.output), head_bytes, tail_bytes))
    return result


@server.tool()
async def send_input(
    id: ProcessId,
    text: Annotated[str, Field(description='The text to write; include "\\n" to press Enter.')],
    close_input: Annotated[
        bool, Field(description="Then close standard input (end of file; in a terminal, ^D).")
    ] = False,
) -> Dict[str, Any]:
    """Write text to a process's stdin (or terminal). Include "\\n" to press Enter.

    close_input=true then closes stdin (end of file; in a terminal, ^D).
    """
    client = _get_client()
    accepted = 0
    if text:
        resp = await _call(client.process.SendInput, pb.SendInputRequest(id=id, data=text.encode()))
        accepted = resp.bytes_accepted
    if close_input:
        await _call(client.process.CloseInput, pb.CloseInputRequest(id=id))
    return {"id": id, "bytes_accepted": accepted, "input_closed": close_input}


@server.tool()
async def send_signal(
    id: ProcessId,
    signal: Annotated[SignalName, Field(description="The signal to send.")] = "SIGTERM",
    leader_only: Annotated[
        bool, Field(description="Signal only the process itself, not the rest of its process group.")
    ] = False,
) -> Dict[str, Any]:
    """Send a signal to a process's whole process group (SIGTERM by default).

    leader_only=true signals only the process itself, not its children.
    """
    await _call(_get_client().process.Signal, pb.SignalRequest(id=id, signal=signal, leader_only=leader_only))
    return {"id": id, "signal": signal, "sent": True}


@server.tool()
async def list_processes(
    state: Annotated[StateName, Field(description='Which processes: "all", "running" or "exited".')] = "all",
    limit: Annotated[
        int,
        Field(description=f"Show at most this many, the most recent (1 to {MAX_LIST_LIMIT}).", ge=1, le=MAX_LIST_LIMIT),
    ] = DEFAULT_LIST_LIMIT,
) -> Dict[str, Any]:
    """List the daemon's most recent processes (at most limit), oldest first.

    A running process shows what its whole tree uses ("usage": kernel state such as
    sleeping or stopped, CPU %, memory in MB, processes) and the ports it listens on
    ("listening", e.g. "127.0.0.1:8000/tcp"): whether a server is up, and where.
    "total" counts every match; a note says how many older ones are not shown.
    """
    if state not in _STATES_BY_NAME:
        raise ToolError(f"state must be one of {sorted(_STATES_BY_NAME)}")
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ToolError(f"limit must be in [1, {MAX_LIST_LIMIT}]")
    resp = await _call(
        _get_client().process.List,
        pb.ListRequest(state=_STATES_BY_NAME[state], with_usage=True, with_ports=True),
    )
    procs = list(resp.processes)
    shown = procs[-limit:]
    result: Dict[str, Any] = {"processes": [_summary(p) for p in shown], "total": len(procs)}
    rest = len(procs) - len(shown)
    if rest:
        result["not_shown"] = rest
        result["note"] = f"… and {rest} older process{'es' if rest != 1 else ''} not shown"
    return result


_ENV_KIND = {
    rpb.ENVIRONMENT_KIND_NATIVE: "native",
    rpb.ENVIRONMENT_KIND_DOCKER: "docker",
    rpb.ENVIRONMENT_KIND_NIX: "nix",
    rpb.ENVIRONMENT_KIND_AUTO: "auto",
}
_ENV_STATE = {
    rpb.ENVIRONMENT_STATE_CREATED: "created",
    rpb.ENVIRONMENT_STATE_INITIALIZING: "initializing",
    rpb.ENVIRONMENT_STATE_READY: "ready",
    rpb.ENVIRONMENT_STATE_STOPPED: "stopped",
    rpb.ENVIRONMENT_STATE_FAILED: "failed",
}


def _environment_summary(e: rpb.Environment) -> Dict[str, Any]:
    out: Dict[str, Any] = {
        "id": e.id,
        "kind": _ENV_KIND.get(e.resolved_kind, "unknown"),
        "state": _ENV_STATE.get(e.state, "unknown"),
        "running_processes": e.running_processes,
    }
    if e.name and e.name != e.id:
        out["name"] = e.name
    if e.id == "native":
        out["description"] = "this machine"
    if e.kind == rpb.ENVIRONMENT_KIND_AUTO and e.kind_reason:
        out["kind_reason"] = e.kind_reason
    if e.HasField("docker") and e.docker.image:
        out["image"] = e.docker.image
        if e.docker.workdir:
            out["workdir"] = e.docker.workdir
    if e.HasField("nix") and e.nix.flake_dir:
        out["flake_dir"] = e.nix.flake_dir
        if e.nix.dev_shell:
            out["dev_shell"] = e.nix.dev_shell
    if e.error:
        out["error"] = e.error
    return out


@server.tool()
async def list_environments() -> Dict[str, Any]:
    """List the environments commands can run in: "native" (this machine) first, then the
    daemon's Docker containers and Nix shells, oldest first. Each has an id (and maybe a
    name), its kind, its state (only "ready" ones run commands), the image or flake, and how
    many processes run in it. Pass an id or name as run_command's or start_background's
    environment."""
    resp = await _call(_get_client().runner.ListEnvironments, rpb.ListEnvironmentsRequest())
    return {"environments": [_environment_summary(e) for e in resp.environments]}


_AGENT_STATUS = {
    apb.AGENT_STATUS_RUNNING: "running",
    apb.AGENT_STATUS_EXITED: "exited",
    apb.AGENT_STATUS_RESTARTING: "restarting",
    apb.AGENT_STATUS_FAILED: "failed",
    apb.AGENT_STATUS_STOPPED: "stopped",
}
_NUDGE_OUTCOME = {
    apb.NUDGE_OUTCOME_DELIVERED: "delivered",
    apb.NUDGE_OUTCOME_NOT_RUNNING: "not_running",
    apb.NUDGE_OUTCOME_TIMED_OUT: "timed_out",
}
_IDLE_OUTCOME = {
    apb.IDLE_OUTCOME_IDLE: "idle",
    apb.IDLE_OUTCOME_TIMED_OUT: "timed_out",
    apb.IDLE_OUTCOME_NOT_RUNNING: "not_running",
}
# The most agent_output returns: RecentOutput's own limit is 8 MiB, too much for a model.
MAX_AGENT_OUTPUT_BYTES = 1 << 20

# Terminal escape sequences: OSC (to BEL or ST), DCS/SOS/PM/APC strings (to ST), CSI (an
# unfinished one at the end too), the other ESC sequences, and a lone ESC.
_ESCAPES = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*(?:[@-~]|$)"
    r"|\x1b[ -/]*[0-~]"
    r"|\x1b"
)


def strip_escapes(text: str) -> str:
    """text without terminal escape sequences (colors, cursor moves, titles, modes)."""
    return _ESCAPES.sub("", text)


def _agent_summary(a: apb.AgentInfo) -> Dict[str, Any]:
    out: Dict[str, Any] = {
        "name": a.spec.name,
        "command": shlex.join(a.spec.argv),
        "kind": "crew" if a.spec.kind == apb.AGENT_KIND_CREW else "task",
        "status": _AGENT_STATUS.get(a.status, "unknown"),
        "idle": a.idle,
        "restart_count": a.restart_count,
        "process_id": a.process_id,
    }
    if a.pid:
        out["pid"] = a.pid
    if a.HasField("last_exit"):
        out["last_exit"] = _exit_fields(a.last_exit)
    return out


def _wait_ms(seconds: float, what: str) -> int:
    if not 0 < seconds <= MAX_TIMEOUT_SECONDS:
        raise ToolError(f"{what} must be in (0, {MAX_TIMEOUT_SECONDS:g}]")
    return max(1, int(seconds * 1000))


AgentName = Annotated[str, Field(description="The agent's name.")]


@server.tool()
async def list_agents() -> Dict[str, Any]:
    """List the daemon's agents, in name order: name, command, kind (crew agents are
    restarted when they exit), status, whether the terminal is idle, restarts, last exit."""
    resp = await _call(_get_client().agent.List, apb.AgentServiceListRequest())
    return {"agents": [_agent_summary(a) for a in resp.agents]}


@server.tool()
async def nudge_agent(
    name: AgentName,
    message: Annotated[str, Field(description="The text to type into the agent's terminal.")],
    wait_for_idle: Annotated[
        bool, Field(description="First wait (at most timeout_seconds) until the terminal has been quiet.")
    ] = False,
    timeout_seconds: Annotated[
        float, Field(description="With wait_for_idle: how long to wait, in seconds.", gt=0, le=MAX_TIMEOUT_SECONDS)
    ] = 30.0,
    submit: Annotated[bool, Field(description="Press Enter after the message.")] = True,
) -> Dict[str, Any]:
    """Type message into an agent's terminal, then press Enter (submit=false: do not).

    wait_for_idle=true first waits (at most timeout_seconds) until the agent's terminal has
    been quiet, so the message does not interrupt it. outcome: "delivered", "not_running"
    or "timed_out" (nothing was typed then).
    """
    req = apb.NudgeRequest(name=name, message=message, no_submit=not submit)
    rpc_timeout = _RPC_TIMEOUT_SECONDS
    if wait_for_idle:
        req.mode = apb.NUDGE_MODE_WAIT_IDLE
        req.timeout_ms = _wait_ms(timeout_seconds, "timeout_seconds")
        rpc_timeout = timeout_seconds + _RPC_SLACK_SECONDS
    resp = await _call(_get_client().agent.Nudge, req, timeout=rpc_timeout)
    return {"name": name, "outcome": _NUDGE_OUTCOME.get(resp.outcome, "unknown")}


@server.tool()
async def agent_output(
    name: AgentName,
    max_bytes: Annotated[
        int,
        Field(description=f"How many of the last bytes to read (1 to {MAX_AGENT_OUTPUT_BYTES}).", ge=1, le=MAX_AGENT_OUTPUT_BYTES),
    ] = 16384,
    wait_idle_seconds: Annotated[
        float,
        Field(description="First wait up to this long for the terminal to go quiet (0: do not wait).", ge=0, le=MAX_TIMEOUT_SECONDS),
    ] = 0.0,
    keep_escapes: Annotated[
        bool,
        Field(description="Keep terminal escape sequences (colors, cursor moves, titles); by default they are removed."),
    ] = False,
) -> Dict[str, Any]:
    r"""The last max_bytes of an agent's terminal output (its current or last run), as text.

    wait_idle_seconds > 0 first waits up to that long for the terminal to go quiet (for
    example after nudge_agent, to read the whole answer); "idle" then says whether it did.
    Terminal escape sequences are removed unless keep_escapes=true. Line ends are "\r\n".
    When older output is left out, the text starts at a line start if one is near.
    """
    if not 0 < max_bytes <= MAX_AGENT_OUTPUT_BYTES:
        raise ToolError(f"max_bytes must be in (0, {MAX_AGENT_OUTPUT_BYTES}]")
    client = _get_client()
    result: Dict[str, Any] = {"name": name}
    if wait_idle_seconds > 0:
        w = await _call(
            client.agent.WaitIdle,
            apb.WaitIdleRequest(name=name, timeout_ms=_wait_ms(wait_idle_seconds, "wait_idle_seconds")),
            timeout=wait_idle_seconds + _RPC_SLACK_SECONDS,
        )
        result["idle"] = _IDLE_OUTCOME.get(w.outcome, "unknown")
    resp = await _call(client.agent.RecentOutput, apb.RecentOutputRequest(name=name, bytes=max_bytes))
    data, offset, snapped = resp.data, resp.offset, False
    if offset:
        # Older output was left out: start at a line start when one is near.
        j = data.find(b"\n", 0, LINE_SNAP_BYTES)
        if 0 <= j < len(data) - 1:
            data, snapped = data[j + 1 :], True
        else:
            data = _skip_continuation(data)
        offset += len(resp.data) - len(data)
    if not _is_text(data):
        result["output"] = _binary_note(len(data), data)
        result["binary"] = True
    else:
        text = _decode(data)
        result["output"] = text if keep_escapes else strip_escapes(text)
    result["offset"] = offset
    if offset:
        note = f"the first {offset} bytes of this run's output are not shown"
        if snapped:
            note += " (cut at a line boundary)"
        result["note"] = note
    return result


def main() -> None:
    """Serve MCP over stdio until the client closes it."""
    server.run("stdio")


if __name__ == "__main__":
    main()
