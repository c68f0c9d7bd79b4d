"""An MCP server (stdio) that gives LLM agents tend's process tools.

Run it with ``python -m tend_client.mcp`` (or the ``tend-mcp`` script). It talks to the
daemon at ``$TEND_ADDR`` (else the default socket) with ``$TEND_TOKEN``, through the
asyncio client. Tools:

- ``run_command``: run a shell command in the foreground, with a timeout; returns the exit
  code, wall time and a head+tail view of the output. On timeout the command keeps running
  in the background and its id is returned.
- ``start_background``: start a command and return its id at once.
- ``read_output``: the head+tail view of a process's output (optionally waiting for it).
- ``send_input``: write text to a process's stdin (or terminal), optionally closing it.
- ``send_signal``: signal a process's group (SIGTERM by default).
- ``list_processes``: the daemon's processes, running and exited.
- ``list_agents``: the daemon's agents (named interactive programs in terminals).
- ``nudge_agent``: type a message into an agent's terminal and press Enter, at once or once
  it is idle.
- ``agent_output``: the last output of an agent's terminal, optionally after waiting for it
  to go idle.

Imports are absolute on purpose: this module lives in ``tend_client`` beside the
``tend_client.mcp`` package, and the MCP SDK is the top-level ``mcp`` package.
"""

from __future__ import annotations

import shlex
from typing import Any, Dict, List, Optional

import grpc

try:  # mcp >= 2: FastMCP was renamed MCPServer.
    from mcp.server.mcpserver import MCPServer as _Server
    from mcp.server.mcpserver.exceptions import ToolError
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP as _Server
    from mcp.server.fastmcp.exceptions import ToolError

from tend_client import AsyncClient, connect_async
from tend_client import agent_pb2 as apb
from tend_client import process_pb2 as pb

# A foreground command longer than this is better started in the background.
MAX_TIMEOUT_SECONDS = 24 * 3600.0
# Extra time the gRPC deadline gives a foreground Start beyond its own timeout.
_RPC_SLACK_SECONDS = 30.0
# Deadline of the quick calls (everything but foreground Start and Wait).
_RPC_TIMEOUT_SECONDS = 30.0

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
    "pty": pb.STREAM_PTY,
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
and last bytes of each stream; notes say what was left out. Agents are named interactive
programs (coding agents, REPLs, shells) in their own terminals: list_agents shows them,
nudge_agent types a message into one, agent_output reads what its terminal showed last."""

server = _Server("tend", instructions=INSTRUCTIONS)

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


async def _call(rpc, request, timeout: float = _RPC_TIMEOUT_SECONDS):
    try:
        return await rpc(request, timeout=timeout)
    except grpc.aio.AioRpcError as e:
        raise TendError(f"tend daemon: {e.code().name}: {e.details()}") from None


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


def _views(outputs: List[pb.StreamOutput]) -> Dict[str, Any]:
    """The output views as {stream name: text}, plus notes on what was left out."""
    out: Dict[str, Any] = {}
    notes: List[str] = []
    for view in outputs:
        name = _STREAM_NAMES.get(view.stream, "output")
        out[name] = view.text
        if view.truncated:
            parts = [f"{view.total_bytes} bytes in all"]
            if view.omitted_bytes:
                parts.append(f"{view.omitted_bytes} bytes omitted between head and tail")
            if view.cut_lines:
                parts.append(f"{view.cut_lines} long line(s) cut, {view.cut_line_bytes} bytes removed")
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
    if p.HasField("pty"):
        out["terminal"] = f"{p.pty.rows}x{p.pty.cols}"
    if p.state == pb.PROCESS_STATE_EXITED:
        out.update(_exit_fields(p.exit))
    return out


def _spec(command: str, cwd: str, env: Optional[Dict[str, str]]) -> pb.ProcessSpec:
    if not command.strip():
        raise ToolError("command is empty")
    return pb.ProcessSpec(argv=["sh", "-c", command], cwd=cwd, env=env or {})


@server.tool()
async def run_command(
    command: str,
    timeout_seconds: float = 60.0,
    cwd: str = "",
    env: Optional[Dict[str, str]] = None,
) -> Dict[str, Any]:
    """Run a shell command (sh -c) and wait for it, at most timeout_seconds.

    Returns its id, exit_code (or signal), wall_time_ms and the head and tail of stdout and
    stderr, with truncation notes when output was left out. If it is still running after
    timeout_seconds it is NOT killed: the result has status "running" and its id, for
    read_output, send_input and send_signal.
    """
    if not 0 < timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise ToolError(f"timeout_seconds must be in (0, {MAX_TIMEOUT_SECONDS:g}]")
    client = _get_client()
    resp = await _call(
        client.process.Start,
        pb.StartRequest(spec=_spec(command, cwd, env), wait_timeout_ms=max(1, int(timeout_seconds * 1000))),
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
    result.update(_exit_fields(p.exit))
    result.update(_views(list(resp.output)))
    return result


@server.tool()
async def start_background(
    command: str,
    cwd: str = "",
    env: Optional[Dict[str, str]] = None,
    name: str = "",
    stdin: bool = False,
    terminal: bool = False,
    rows: int = 24,
    cols: int = 80,
) -> Dict[str, Any]:
    """Start a shell command (sh -c) in the background and return its id at once.

    stdin=true keeps its standard input open for send_input (otherwise it reads nothing).
    terminal=true runs it in a pseudo-terminal of rows x cols (for programs that want a
    TTY; input is always open then). name is an optional unique name usable as its id.
    """
    spec = _spec(command, cwd, env)
    spec.name = name
    spec.stdin = stdin
    if terminal:
        spec.pty.CopyFrom(pb.PtySize(rows=rows, cols=cols))
    resp = await _call(_get_client().process.Start, pb.StartRequest(spec=spec))
    return _summary(resp.process)


@server.tool()
async def read_output(
    id: str,
    stream: str = "all",
    wait_seconds: float = 0.0,
    head_bytes: int = 0,
    tail_bytes: int = 0,
) -> Dict[str, Any]:
    """Read a process's output: the head and tail of each stream, with truncation notes.

    stream: "all", "stdout", "stderr" or "terminal". wait_seconds > 0 first waits that long
    for the process to exit. head_bytes / tail_bytes: how much to keep from the start and
    the end of each stream (0: 16384 each).
    """
    if stream not in _STREAMS_BY_NAME:
        raise ToolError(f"stream must be one of {sorted(_STREAMS_BY_NAME)}")
    client = _get_client()
    if wait_seconds > 0:
        await _call(
            client.process.Wait,
            pb.WaitRequest(id=id, timeout_ms=int(wait_seconds * 1000)),
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
    result.update(_views(list(resp.output)))
    return result


@server.tool()
async def send_input(id: str, text: str, close_input: bool = False) -> Dict[str, Any]:
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
async def send_signal(id: str, signal: str = "SIGTERM", leader_only: bool = False) -> Dict[str, Any]:
    """Send a signal ("SIGTERM", "INT", "9", ...) to a process's whole process group.

    leader_only=true signals only the process itself, not its children.
    """
    await _call(_get_client().process.Signal, pb.SignalRequest(id=id, signal=signal, leader_only=leader_only))
    return {"id": id, "signal": signal, "sent": True}


@server.tool()
async def list_processes(state: str = "all") -> Dict[str, Any]:
    """List the daemon's processes, oldest first: "all", "running" or "exited"."""
    if state not in _STATES_BY_NAME:
        raise ToolError(f"state must be one of {sorted(_STATES_BY_NAME)}")
    resp = await _call(_get_client().process.List, pb.ListRequest(state=_STATES_BY_NAME[state]))
    return {"processes": [_summary(p) for p in resp.processes]}


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


@server.tool()
async def list_agents() -> Dict[str, Any]:
    """List the daemon's agents, in name order: name, command, kind (crew agents are
    restarted when they exit), status, whether the terminal is idle, restarts, last exit."""
    resp = await _call(_get_client().agent.List, apb.AgentServiceListRequest())
    return {"agents": [_agent_summary(a) for a in resp.agents]}


@server.tool()
async def nudge_agent(
    name: str,
    message: str,
    wait_for_idle: bool = False,
    timeout_seconds: float = 30.0,
    submit: bool = True,
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
async def agent_output(name: str, max_bytes: int = 16384, wait_idle_seconds: float = 0.0) -> Dict[str, Any]:
    """The last max_bytes of an agent's terminal output (its current or last run), as text.

    wait_idle_seconds > 0 first waits up to that long for the terminal to go quiet (for
    example after nudge_agent, to read the whole answer); "idle" then says whether it did.
    Terminal output may hold escape sequences and uses "\r\n" line ends.
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
    result["output"] = resp.data.decode("utf-8", errors="replace")
    result["offset"] = resp.offset
    if resp.offset:
        result["note"] = f"the first {resp.offset} bytes of this run's output are not shown"
    return result


def main() -> None:
    """Serve MCP over stdio until the client closes it."""
    server.run("stdio")


if __name__ == "__main__":
    main()
