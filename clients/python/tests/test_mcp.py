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
from conftest import BUSYBOX_IMAGE, clean_env, docker_missing, require

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

            # A server: what it uses, and the port it listens on, once it listens.
            result_of(await call("start_background", command="exec python3 -m http.server 0 --bind 127.0.0.1", name="web"))
            web = {}
            for _ in range(200):
                r = result_of(await call("list_processes", state="running"))
                web = next(p for p in r["processes"] if p.get("name") == "web")
                if web.get("listening"):
                    break
                await anyio.sleep(0.05)
            assert len(web["listening"]) == 1 and web["listening"][0].startswith("127.0.0.1:"), web
            assert web["listening"][0].endswith("/tcp"), web
            assert web["usage"]["kernel_state"] in ("sleeping", "running") and web["usage"]["memory_mb"] > 1, web
            assert web["usage"]["processes"] == 1, web
            result_of(await call("send_signal", id="web", signal="SIGKILL"))
            await call("read_output", id="web", wait_seconds=10)
            r = result_of(await call("read_output", id=slow, wait_seconds=10))
            assert r["state"] == "exited" and r["signal"] == "SIGKILL"
            assert r["stdout"] == "started\n"

            # A server started with a readiness check: returned once its port answers HTTP;
            # read_output shows it ready, what it uses and where it listens.
            import socket
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            r = result_of(
                await call(
                    "start_background",
                    command=f"sleep 0.3; exec python3 -m http.server {port} --bind 127.0.0.1",
                    name="site",
                    ready_port=port,
                    ready_http_path="/",
                    ready_timeout_seconds=30,
                )
            )
            assert r["readiness"] == "ready" and r["ready_after_ms"] >= 300, r
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            r = result_of(await call("read_output", id="site"))
            assert r["readiness"] == "ready" and r["listening"] == [f"127.0.0.1:{port}/tcp"], r
            assert r["usage"]["processes"] == 1, r
            result_of(await call("send_signal", id="site", signal="SIGKILL"))
            await call("read_output", id="site", wait_seconds=10)
            # Exited before ready: failed, with its exit code and output.
            r = result_of(
                await call("start_background", command="echo 'port in use' >&2; exit 3", ready_log_regex="listening")
            )
            assert r["readiness"] == "failed" and r["exit_code"] == 3 and "port in use" in r["stderr"], r
            # Not ready in time: pending, with the last check's error; it keeps running.
            r = result_of(
                await call("start_background", command="sleep 30", ready_command="false", ready_timeout_seconds=0.5)
            )
            assert r["readiness"] == "pending" and r["state"] == "running", r
            assert "exited with 1" in r["last_check"], r
            result_of(await call("send_signal", id=r["id"], signal="SIGKILL"))
            await call("read_output", id=r["id"], wait_seconds=10)
            msg = error_text(await call("start_background", command="true", ready_http_path="/x"))
            assert "ready_port" in msg, msg

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


async def environments_scenario(addr: str, docker: bool) -> None:
    from tend_client import runner_pb2 as rpb

    with tend_client.connect(addr, token="") as c:
        here = c.runner.CreateEnvironment(
            rpb.CreateEnvironmentRequest(name="here", kind=rpb.ENVIRONMENT_KIND_NATIVE), timeout=30
        ).environment
        box = None
        if docker:
            box = c.runner.CreateEnvironment(
                rpb.CreateEnvironmentRequest(
                    name="box", kind=rpb.ENVIRONMENT_KIND_DOCKER, docker=rpb.DockerSettings(image=BUSYBOX_IMAGE)
                ),
                timeout=30,
            ).environment
            events = list(c.runner.InitEnvironment(rpb.InitEnvironmentRequest(environment_id="box"), timeout=120))
            box = events[-1].environment
            assert box.state == rpb.ENVIRONMENT_STATE_READY, events
        later = c.runner.CreateEnvironment(
            rpb.CreateEnvironmentRequest(name="later", kind=rpb.ENVIRONMENT_KIND_NATIVE), timeout=30
        ).environment

    async with stdio_client(server_params(addr)) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = {t.name: t for t in (await session.list_tools()).tools}
            assert "list_environments" in tools, list(tools)
            for tool in ("run_command", "start_background"):
                assert "environment" in tool_schema(tools[tool])["properties"], tool

            async def call(tool: str, **args) -> Any:
                return await session.call_tool(tool, args)

            r = result_of(await call("list_environments"))
            envs = r["environments"]
            assert envs[0]["id"] == "native" and envs[0]["kind"] == "native" and envs[0]["state"] == "ready", envs
            by_name = {e.get("name", e["id"]): e for e in envs}
            assert by_name["here"]["id"] == here.id and by_name["here"]["kind"] == "native", envs
            assert by_name["later"]["id"] == later.id, envs

            # A command in a named environment, by name and by id; the result says where it ran.
            r = result_of(await call("run_command", command="echo in here; exit 2", environment="here", timeout_seconds=20))
            assert r["exit_code"] == 2 and r["stdout"] == "in here\n" and r["environment"] == here.id, r
            r = result_of(await call("run_command", command="echo on host", timeout_seconds=20))
            assert r["stdout"] == "on host\n" and "environment" not in r, r
            r = result_of(await call("start_background", command="sleep 30", environment=here.id, name="bg"))
            assert r["state"] == "running" and r["environment"] == here.id, r
            r = result_of(await call("list_processes", state="running"))
            assert [p.get("environment") for p in r["processes"] if p.get("name") == "bg"] == [here.id], r
            result_of(await call("send_signal", id="bg", signal="SIGKILL"))

            # An unknown environment: a tool error naming it.
            msg = error_text(await call("run_command", command="true", environment="nowhere"))
            assert "NOT_FOUND" in msg and "nowhere" in msg, msg
            msg = error_text(await call("start_background", command="true", environment="nowhere"))
            assert "NOT_FOUND" in msg and "nowhere" in msg, msg

            if box is not None:
                assert by_name["box"]["kind"] == "docker" and by_name["box"]["image"] == BUSYBOX_IMAGE, envs
                assert by_name["box"]["state"] == "ready", envs
                r = result_of(await call("run_command", command="hostname; echo oops >&2; exit 3", environment="box", timeout_seconds=30))
                assert r["exit_code"] == 3 and r["environment"] == box.id, r
                assert r["stdout"] == box.container_id[:12] + "\n" and r["stderr"] == "oops\n", r
                r = result_of(await call("list_environments"))
                assert {e["id"]: e for e in r["environments"]}[box.id]["running_processes"] == 0, r

    if box is not None:
        with tend_client.connect(addr, token="") as c:
            c.runner.ShutdownEnvironment(rpb.ShutdownEnvironmentRequest(environment_id=box.id, grace_ms=0), timeout=30)


@needs_mcp
def test_mcp_environments(daemon):
    async def main():
        with anyio.fail_after(SESSION_TIMEOUT):
            await environments_scenario(daemon.addr, docker=False)

    anyio.run(main)


@needs_mcp
def test_mcp_run_command_in_docker(daemon):
    require("docker", docker_missing())

    async def main():
        with anyio.fail_after(SESSION_TIMEOUT):
            await environments_scenario(daemon.addr, docker=True)

    anyio.run(main)


def test_missing_mcp_message():
    """Without the mcp package: one line on stderr saying what to install, exit status 1."""
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src_dir(), env.get("PYTHONPATH", "")) if p)
    # None in sys.modules makes `import mcp` fail as if it were not installed.
    code = "import runpy, sys; sys.modules['mcp'] = None; runpy.run_module('tend_client.mcp', run_name='__main__', alter_sys=True)"
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert p.stdout == ""
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert "tend-client[mcp]" in lines[0] and "pip install './clients/python[mcp]'" in lines[0], lines[0]
    assert "Traceback" not in p.stderr


def tool_schema(tool) -> Dict[str, Any]:
    return getattr(tool, "input_schema", None) or tool.inputSchema


def init_server_info(init) -> Any:
    return getattr(init, "server_info", None) or init.serverInfo


def text_head_tail(text: str):
    """(head lines, marker, tail lines) of a view with one omission marker."""
    head, sep, rest = text.partition("[... ")
    assert sep, text
    marker, _, tail = rest.partition(" ...]\n")
    return head.splitlines(), marker, tail.splitlines()


async def schema_and_views_scenario(addr: str) -> None:
    async with stdio_client(server_params(addr)) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            info = init_server_info(init)
            assert info.name == "tend" and info.version == tend_client.__version__, info

            tools = {t.name: t for t in (await session.list_tools()).tools}
            for t in tools.values():
                for param, prop in tool_schema(t).get("properties", {}).items():
                    assert prop.get("description"), f"{t.name}.{param} has no description"
            props = {name: tool_schema(t).get("properties", {}) for name, t in tools.items()}
            assert props["read_output"]["stream"]["enum"] == ["all", "stdout", "stderr", "terminal"]
            assert props["list_processes"]["state"]["enum"] == ["all", "running", "exited"]
            assert {"SIGTERM", "SIGINT", "SIGKILL", "SIGHUP"} <= set(props["send_signal"]["signal"]["enum"])
            assert props["list_processes"]["limit"]["maximum"] >= props["list_processes"]["limit"]["default"]
            desc = tools["agent_output"].description
            assert "\\r\\n" in desc and "\r" not in desc, desc

            async def call(tool: str, **args) -> Any:
                return await session.call_tool(tool, args)

            # Cuts at line boundaries: seq's lines are short, so both cuts move to one.
            r = result_of(await call("run_command", command="seq 1 100000", timeout_seconds=30))
            r = result_of(await call("read_output", id=r["id"], head_bytes=1000, tail_bytes=1000))
            head, marker, tail = text_head_tail(r["stdout"])
            assert "line boundar" in marker, marker
            assert head == [str(i) for i in range(1, len(head) + 1)], head[-3:]
            assert tail == [str(i) for i in range(100001 - len(tail), 100001)], tail[:3]
            # The omitted bytes are exactly the lines left out, and the cuts moved at most 256 bytes.
            omitted = sum(len(f"{i}\n") for i in range(len(head) + 1, 100001 - len(tail)))
            assert marker == f"{omitted} bytes omitted; cut at line boundaries", marker
            assert 1000 - 256 <= sum(len(x) + 1 for x in head) <= 1000
            assert 1000 - 256 <= sum(len(x) + 1 for x in tail) <= 1000
            assert any("line boundaries" in n for n in r["truncation"]), r["truncation"]

            # No line boundary near the cut: the cut stays where it was.
            r = result_of(await call("run_command", command="head -c 50000 /dev/zero | tr '\\0' a", timeout_seconds=30))
            head, marker, tail = text_head_tail(r["stdout"])
            assert marker.endswith("bytes omitted") and "line" not in marker, marker

            # Binary output is described, not dumped.
            r = result_of(await call("run_command", command="printf 'PK\\000\\001\\377\\376 data'", timeout_seconds=30))
            assert r["stdout"].startswith("[binary output: 11 bytes;"), r["stdout"]
            assert "\0" not in r["stdout"] and "\ufffd" not in r["stdout"]
            assert any("binary" in n for n in r["truncation"]), r
            r = result_of(await call("run_command", command="printf 'caf\\351\\n'", timeout_seconds=30))
            assert r["stdout"].startswith("[binary output: 5 bytes;"), r["stdout"]
            r = result_of(await call("run_command", command="head -c 100000 /dev/urandom", timeout_seconds=30))
            assert r["stdout"].startswith("[binary output: 100000 bytes;"), r["stdout"][:200]
            # Text that is not ASCII is text.
            r = result_of(await call("run_command", command="printf 'h\\303\\251llo \\342\\234\\223\\n'", timeout_seconds=30))
            assert r["stdout"] == "héllo ✓\n" and "truncation" not in r, r

            # list_processes: the most recent `limit`, and a count of the rest.
            ids = [result_of(await call("run_command", command="true", timeout_seconds=30))["id"] for _ in range(4)]
            r = result_of(await call("list_processes", limit=3))
            assert [p["id"] for p in r["processes"]] == ids[-3:], r
            assert r["total"] >= 9 and r["not_shown"] == r["total"] - 3, r
            assert f"… and {r['not_shown']} older processes not shown" in r["note"], r
            r = result_of(await call("list_processes"))
            assert len(r["processes"]) == r["total"] and "note" not in r, r
            msg = error_text(await call("list_processes", limit=0))
            assert "limit" in msg, msg
            msg = error_text(await call("list_processes", limit=100000))
            assert "limit" in msg, msg


@needs_mcp
def test_mcp_schema_version_and_views(daemon):
    async def main():
        with anyio.fail_after(SESSION_TIMEOUT):
            await schema_and_views_scenario(daemon.addr)

    anyio.run(main)


ESCAPES_SCRIPT = (
    r"printf '\033[1;31mred\033[0m \033]0;a title\007plain\033(B \033[?25ldone\n'; "
    r"seq 1 2000; exec cat"
)


async def agent_escapes_scenario(addr: str) -> None:
    from tend_client import agent_pb2 as apb

    with tend_client.connect(addr, token="") as c:
        c.agent.Spawn(apb.SpawnRequest(spec=apb.AgentSpec(name="esc", argv=["sh", "-c", ESCAPES_SCRIPT])), timeout=30)

    async with stdio_client(server_params(addr)) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()

            async def call(tool: str, **args) -> Any:
                return await session.call_tool(tool, args)

            # Escape sequences are stripped by default and kept on request.
            r = result_of(await call("agent_output", name="esc", wait_idle_seconds=10))
            assert r["idle"] == "idle", r
            assert r["output"].startswith("red plain done\r\n1\r\n2\r\n"), r["output"][:100]
            assert "\x1b" not in r["output"] and "\x07" not in r["output"], r["output"][:100]
            r = result_of(await call("agent_output", name="esc", keep_escapes=True))
            assert r["output"].startswith("\x1b[1;31mred\x1b[0m \x1b]0;a title\x07plain\x1b(B \x1b[?25ldone\r\n"), r["output"][:100]

            # A tail that starts mid-line starts at the next line instead, and says so.
            r = result_of(await call("agent_output", name="esc", max_bytes=100))
            lines = r["output"].split("\r\n")
            assert lines[-1] == "" and lines[-2] == "2000", lines
            nums = [int(x) for x in lines[:-1]]
            assert nums == list(range(nums[0], 2001)), nums
            assert len(r["output"]) < 100 and r["offset"] > 0, r
            assert "line boundary" in r["note"], r


@needs_mcp
def test_mcp_agent_output_escapes_and_lines(make_daemon):
    daemon = make_daemon("--quiescence-ms", "300")

    async def main():
        with anyio.fail_after(SESSION_TIMEOUT):
            await agent_escapes_scenario(daemon.addr)

    anyio.run(main)
