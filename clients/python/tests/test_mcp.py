"""The MCP server end to end: an MCP client session over stdio (`python -m tend_client.mcp`)
against the real daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Dict

import anyio
import pytest

import tend_client
from conftest import clean_env

try:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client
except ImportError:
    HAVE_MCP = False
else:
    HAVE_MCP = True

# The tests that talk MCP need the SDK; test_missing_mcp_message does not.
needs_mcp = pytest.mark.skipif(not HAVE_MCP, reason="the mcp package is not installed (pip install 'tend-client[mcp]')")

SESSION_TIMEOUT = 90.0


def src_dir() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(tend_client.__file__)))


def is_error(res) -> bool:
    # mcp 2.x spells the fields snake_case; 1.x camelCase.
    return bool(getattr(res, "is_error", None) or getattr(res, "isError", None))


def result_of(res) -> Dict[str, Any]:
    """A tool's dict result, from the structured content or the JSON text."""
    assert not is_error(res), f"tool failed: {res.content}"
    structured = getattr(res, "structured_content", None) or getattr(res, "structuredContent", None)
    if structured:
        return structured.get("result", structured) if set(structured) == {"result"} else structured
    data = json.loads(res.content[0].text)
    return data


def error_text(res) -> str:
    assert is_error(res), f"tool should have failed: {res.content}"
    return " ".join(getattr(c, "text", "") for c in res.content)


def server_params(addr: str) -> StdioServerParameters:
    env = clean_env()
    env["TEND_ADDR"] = addr
    # The server subprocess imports the same tend_client as the tests, installed or not.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src_dir(), env.get("PYTHONPATH", "")) if p)
    return StdioServerParameters(command=sys.executable, args=["-m", "tend_client.mcp"], env=env)


async def session_scenario(addr: str) -> None:
    async with stdio_client(server_params(addr)) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = {t.name for t in (await session.list_tools()).tools}
            assert tools >= {
                "run_command",
                "start_background",
                "read_output",
                "send_input",
                "send_signal",
                "list_processes",
            }, tools

            async def call(tool: str, **args) -> Any:
                return await session.call_tool(tool, args)

            # Foreground: exit code, wall time, output.
            r = result_of(await call("run_command", command="echo hello; echo oops >&2; exit 4", timeout_seconds=20))
            assert r["status"] == "exited" and r["exit_code"] == 4
            assert r["stdout"] == "hello\n" and r["stderr"] == "oops\n"
            assert isinstance(r["wall_time_ms"], int) and "truncation" not in r

            # Long output: head + tail with a truncation note.
            r = result_of(await call("run_command", command="seq 1 100000", timeout_seconds=30))
            assert r["exit_code"] == 0
            assert r["stdout"].startswith("1\n2\n3\n") and r["stdout"].endswith("99999\n100000\n")
            assert any("omitted" in note for note in r["truncation"]), r["truncation"]

            # Timeout: still running, in the background, with its id.
            r = result_of(await call("run_command", command="echo started; sleep 30", timeout_seconds=0.5))
            assert r["status"] == "running" and r["id"]
            slow = r["id"]
            r = result_of(await call("list_processes", state="running"))
            assert slow in [p["id"] for p in r["processes"]]
            result_of(await call("send_signal", id=slow, signal="SIGKILL"))
            r = result_of(await call("read_output", id=slow, wait_seconds=10))
            assert r["state"] == "exited" and r["signal"] == "SIGKILL"
            assert r["stdout"] == "started\n"

            # Background with stdin: send input, close it, read what it did.
            r = result_of(await call("start_background", command="tr a-z A-Z", stdin=True, name="upper"))
            assert r["state"] == "running" and r["name"] == "upper"
            r = result_of(await call("send_input", id="upper", text="shout\n", close_input=True))
            assert r["bytes_accepted"] == 6
            r = result_of(await call("read_output", id="upper", wait_seconds=10, stream="stdout"))
            assert r["state"] == "exited" and r["exit_code"] == 0 and r["stdout"] == "SHOUT\n"

            # Errors come back as tool errors naming the daemon's code.
            msg = error_text(await call("read_output", id="no-such-process"))
            assert "NOT_FOUND" in msg and "no-such-process" in msg, msg
            msg = error_text(await call("read_output", id=slow, stream="bogus"))
            assert "stream" in msg and "'terminal'" in msg, msg

            r = result_of(await call("list_processes"))
            assert {p["state"] for p in r["processes"]} == {"exited"}


@needs_mcp
def test_mcp_stdio_session(daemon):
    async def main():
        with anyio.fail_after(SESSION_TIMEOUT):
            await session_scenario(daemon.addr)

    anyio.run(main)


async def agent_scenario(addr: str) -> None:
    from tend_client import agent_pb2 as apb

    with tend_client.connect(addr, token="") as c:
        c.agent.Spawn(apb.SpawnRequest(spec=apb.AgentSpec(name="repl", argv=["python3", "-i", "-q"])), timeout=30)
        c.agent.Spawn(apb.SpawnRequest(spec=apb.AgentSpec(name="cat", argv=["cat"], kind=apb.AGENT_KIND_CREW)), timeout=30)
        c.agent.Stop(apb.StopRequest(name="cat"), timeout=30)

    async with stdio_client(server_params(addr)) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = {t.name for t in (await session.list_tools()).tools}
            assert tools >= {"list_agents", "nudge_agent", "agent_output"}, tools

            async def call(tool: str, **args) -> Any:
                return await session.call_tool(tool, args)

            r = result_of(await call("list_agents"))
            agents = {a["name"]: a for a in r["agents"]}
            assert list(agents) == ["cat", "repl"], r
            assert agents["repl"]["status"] == "running" and agents["repl"]["kind"] == "task"
            assert agents["repl"]["command"] == "python3 -i -q" and agents["repl"]["pid"] > 0
            assert agents["cat"]["status"] == "stopped" and agents["cat"]["kind"] == "crew"
            assert agents["cat"]["last_exit"]["signal"] == "SIGTERM" and "pid" not in agents["cat"]

            # Typed once the REPL is idle at its prompt; the answer read once it is idle again.
            r = result_of(await call("nudge_agent", name="repl", message="print(6*7)", wait_for_idle=True, timeout_seconds=20))
            assert r == {"name": "repl", "outcome": "delivered"}, r
            r = result_of(await call("agent_output", name="repl", wait_idle_seconds=10))
            assert r["idle"] == "idle" and "\n42\r\n" in r["output"], r
            r = result_of(await call("agent_output", name="repl", max_bytes=4))
            assert r["output"] == ">>> " and r["offset"] > 0 and "not shown" in r["note"], r

            r = result_of(await call("nudge_agent", name="cat", message="hello"))
            assert r["outcome"] == "not_running", r

            msg = error_text(await call("nudge_agent", name="nobody", message="hi"))
            assert "NOT_FOUND" in msg and "nobody" in msg, msg
            msg = error_text(await call("agent_output", name="repl", max_bytes=0))
            assert "max_bytes" in msg, msg


@needs_mcp
def test_mcp_agent_tools(make_daemon):
    daemon = make_daemon("--quiescence-ms", "300")

    async def main():
        with anyio.fail_after(SESSION_TIMEOUT):
            await agent_scenario(daemon.addr)

    anyio.run(main)
