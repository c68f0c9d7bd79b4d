"""RunnerService (client.runner) against the real daemon: the built-in "native" environment,
a native environment of one's own, FindFreePort, Capabilities, errors, and a Docker
environment end to end when an engine answers at $DOCKER_HOST (scripts/test starts one; a
test that needs it and finds none skips saying why, and fails under CI=true)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import List, Tuple

import grpc
import pytest

import tend_client
from conftest import BUSYBOX_IMAGE, docker_api, docker_missing, require
from tend_client import process_pb2 as pb
from tend_client import runner_pb2 as rpb

TIMEOUT = 30.0
# Creating a container (and, the first time, looking the image up) may take a while.
INIT_TIMEOUT = 120.0


def run(client: tend_client.Client, spec: pb.ProcessSpec) -> Tuple[pb.ProcessInfo, bytes, bytes, pb.ExitStatus]:
    """Run spec to its exit: (started, stdout, stderr, exit)."""
    started, out, err, exit_ = None, b"", b"", None
    for r in client.process.Run(pb.RunRequest(spec=spec), timeout=TIMEOUT):
        kind = r.event.WhichOneof("kind")
        if kind == "started":
            started = r.event.started
        elif kind == "data":
            if r.event.data.stream == pb.STREAM_STDOUT:
                out += r.event.data.data
            elif r.event.data.stream == pb.STREAM_STDERR:
                err += r.event.data.data
        elif kind == "exited":
            exit_ = r.event.exited
    assert started is not None and exit_ is not None
    return started, out, err, exit_


def test_list_environments_has_native(client):
    envs = client.runner.ListEnvironments(rpb.ListEnvironmentsRequest(), timeout=TIMEOUT).environments
    assert envs[0].id == "native", envs
    native = envs[0]
    assert native.kind == rpb.ENVIRONMENT_KIND_NATIVE and native.resolved_kind == rpb.ENVIRONMENT_KIND_NATIVE
    assert native.state == rpb.ENVIRONMENT_STATE_READY
    got = client.runner.GetEnvironment(rpb.GetEnvironmentRequest(environment_id="native"), timeout=TIMEOUT)
    assert got.environment.id == "native"


def test_a_native_environment_runs_echo(client):
    env = client.runner.CreateEnvironment(
        rpb.CreateEnvironmentRequest(name="here", kind=rpb.ENVIRONMENT_KIND_NATIVE), timeout=TIMEOUT
    ).environment
    assert env.id.startswith("e-") and env.name == "here", env
    assert env.state == rpb.ENVIRONMENT_STATE_READY, env  # native: ready at once
    assert env.created_at_unix_ms > 0

    # Listed after "native", found by name and by id.
    envs = client.runner.ListEnvironments(rpb.ListEnvironmentsRequest(), timeout=TIMEOUT).environments
    assert [e.id for e in envs] == ["native", env.id], envs
    for key in ("here", env.id):
        got = client.runner.GetEnvironment(rpb.GetEnvironmentRequest(environment_id=key), timeout=TIMEOUT)
        assert got.environment.id == env.id and got.environment.name == "here"

    # A process in it, by name (Run) and by id (foreground Start).
    started, out, err, exit_ = run(client, pb.ProcessSpec(argv=["echo", "hi"], environment_id="here"))
    assert out == b"hi\n" and err == b"" and exit_.exit_code == 0
    assert started.environment_id == env.id
    resp = client.process.Start(
        pb.StartRequest(spec=pb.ProcessSpec(argv=["echo", "by id"], environment_id=env.id), wait_timeout_ms=10_000),
        timeout=TIMEOUT,
    )
    assert resp.process.environment_id == env.id
    assert [o.text for o in resp.output if o.stream == pb.STREAM_STDOUT] == ["by id\n"]

    # Its name is taken now.
    with pytest.raises(grpc.RpcError) as e:
        client.runner.CreateEnvironment(
            rpb.CreateEnvironmentRequest(name="here", kind=rpb.ENVIRONMENT_KIND_NATIVE), timeout=TIMEOUT
        )
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS, e.value.details()

    # Shut down: forgotten, and the name is free again.
    client.runner.ShutdownEnvironment(rpb.ShutdownEnvironmentRequest(environment_id="here"), timeout=TIMEOUT)
    with pytest.raises(grpc.RpcError) as e:
        client.runner.GetEnvironment(rpb.GetEnvironmentRequest(environment_id="here"), timeout=TIMEOUT)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_find_free_port_twice_gives_two_ports(client):
    a = client.runner.FindFreePort(rpb.FindFreePortRequest(), timeout=TIMEOUT)
    b = client.runner.FindFreePort(rpb.FindFreePortRequest(), timeout=TIMEOUT)
    assert a.port != b.port, (a, b)
    now_ms = time.time() * 1000
    for p in (a, b):
        assert p.address == "127.0.0.1" and 0 < p.port <= 65535, p
        assert p.held_until_unix_ms > now_ms - 1000, p
        # Free for the caller to bind.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", p.port))
    # Within a range.
    r = client.runner.FindFreePort(rpb.FindFreePortRequest(min_port=20000, max_port=20100), timeout=TIMEOUT)
    assert 20000 <= r.port <= 20100, r


def test_capabilities_name_docker(client):
    caps = client.runner.Capabilities(rpb.CapabilitiesRequest(refresh=True), timeout=TIMEOUT)
    assert caps.cpus >= 1 and caps.memory_bytes > 0, caps
    assert caps.os and caps.arch and caps.probed_at_unix_ms > 0, caps
    assert caps.HasField("docker") and caps.HasField("nix"), caps
    # The toolchains looked for, found or not; a found one has its path.
    assert caps.tools and all(t.path.startswith("/") for t in caps.tools if t.found), caps.tools
    missing = docker_missing()
    if missing is None:
        assert caps.docker.available, caps.docker
        assert caps.docker.version and caps.docker.api_version, caps.docker
        assert caps.docker.reason == ""
    else:
        # The daemon must say why (and not fail the call); the test itself needs Docker too.
        assert not caps.docker.available and caps.docker.reason, caps.docker
        require("docker", missing)


def test_runner_errors_name_what_is_wrong(client):
    with pytest.raises(grpc.RpcError) as e:
        client.runner.GetEnvironment(rpb.GetEnvironmentRequest(environment_id="e-99"), timeout=TIMEOUT)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "e-99" in e.value.details(), e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        client.runner.CreateEnvironment(rpb.CreateEnvironmentRequest(name="nokind"), timeout=TIMEOUT)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "kind" in e.value.details(), e.value.details()
    # A process in an unknown environment.
    with pytest.raises(grpc.RpcError) as e:
        client.process.Start(pb.StartRequest(spec=pb.ProcessSpec(argv=["true"], environment_id="nowhere")), timeout=TIMEOUT)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "nowhere" in e.value.details(), e.value.details()
    # "native" cannot be stopped.
    with pytest.raises(grpc.RpcError) as e:
        client.runner.StopEnvironment(rpb.StopEnvironmentRequest(environment_id="native"), timeout=TIMEOUT)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, e.value.details()


def test_async_client_has_runner(daemon):
    async def main() -> List[str]:
        async with tend_client.connect_async(daemon.addr, token="") as c:
            resp = await c.runner.ListEnvironments(rpb.ListEnvironmentsRequest(), timeout=TIMEOUT)
            return [e.id for e in resp.environments]

    assert asyncio.run(main()) == ["native"]


def container_state(container_id: str) -> Tuple[int, dict]:
    """(HTTP status, inspect JSON) of a container, asked of the engine directly."""
    status, body = docker_api("GET", f"/containers/{container_id}/json")
    return status, (json.loads(body) if status == 200 else {})


def test_docker_environment_end_to_end(client):
    require("docker", docker_missing())
    env = client.runner.CreateEnvironment(
        rpb.CreateEnvironmentRequest(
            name="box", kind=rpb.ENVIRONMENT_KIND_DOCKER, docker=rpb.DockerSettings(image=BUSYBOX_IMAGE)
        ),
        timeout=TIMEOUT,
    ).environment
    assert env.state == rpb.ENVIRONMENT_STATE_CREATED and env.resolved_kind == rpb.ENVIRONMENT_KIND_DOCKER, env
    assert env.docker.image == BUSYBOX_IMAGE and not env.container_id
    shut_down = False
    try:
        # Progress events, the last one carrying the environment, READY.
        events = list(client.runner.InitEnvironment(rpb.InitEnvironmentRequest(environment_id="box"), timeout=INIT_TIMEOUT))
        assert events, "InitEnvironment sent no events"
        phases = [e.phase for e in events]
        assert "create" in phases and phases[-1] == "ready", phases
        assert all(not e.HasField("environment") for e in events[:-1]), events
        ready = events[-1].environment
        assert ready.id == env.id and ready.state == rpb.ENVIRONMENT_STATE_READY and ready.container_id, ready
        status, info = container_state(ready.container_id)
        assert status == 200 and info["State"]["Running"], (status, info.get("State"))

        # Again: already READY, one event at once.
        again = list(client.runner.InitEnvironment(rpb.InitEnvironmentRequest(environment_id=env.id), timeout=TIMEOUT))
        assert again[-1].environment.state == rpb.ENVIRONMENT_STATE_READY, again

        # A process in the container: its stdout and its exit code.
        started, out, err, exit_ = run(client, pb.ProcessSpec(argv=["sh", "-c", "echo hi; exit 3"], environment_id="box"))
        assert out == b"hi\n" and err == b"", (out, err)
        assert exit_.HasField("exit_code") and exit_.exit_code == 3, exit_
        assert started.environment_id == env.id
        # It ran in the container: Docker names the container's host after its id.
        _, out, _, exit_ = run(client, pb.ProcessSpec(argv=["hostname"], environment_id=env.id))
        assert exit_.exit_code == 0 and out.decode().strip() == ready.container_id[:12], out

        # Shutdown removes the container and forgets the environment.
        resp = client.runner.ShutdownEnvironment(
            rpb.ShutdownEnvironmentRequest(environment_id="box", grace_ms=1000), timeout=TIMEOUT
        )
        shut_down = True
        assert resp.container_removed, resp
        status, _ = container_state(ready.container_id)
        assert status == 404, f"container {ready.container_id} is still there ({status})"
        with pytest.raises(grpc.RpcError) as e:
            client.runner.GetEnvironment(rpb.GetEnvironmentRequest(environment_id="box"), timeout=TIMEOUT)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        envs = client.runner.ListEnvironments(rpb.ListEnvironmentsRequest(), timeout=TIMEOUT).environments
        assert [e.id for e in envs] == ["native"], envs
    finally:
        if not shut_down:
            try:
                client.runner.ShutdownEnvironment(
                    rpb.ShutdownEnvironmentRequest(environment_id=env.id, grace_ms=0), timeout=TIMEOUT
                )
            except grpc.RpcError:
                pass
