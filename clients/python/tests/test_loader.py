"""LoaderService (client.loader) against the real daemon: tend loads tend (`tend serve
--handshake`), the loaded tend answers through its own address and through the host with the
`tend-plugin` header, and Unload leaves nothing; an unknown binary is NotFound naming it."""

from __future__ import annotations

import os

import grpc
import pytest

import tend_client
from conftest import require_bin
from tend_client import loader_pb2 as lpb
from tend_client import process_pb2 as pb

TIMEOUT = 30.0


def run_stdout(stub, spec: pb.ProcessSpec, metadata=()) -> bytes:
    out = b""
    for r in stub.Run(pb.RunRequest(spec=spec), timeout=TIMEOUT, metadata=metadata):
        if r.event.WhichOneof("kind") == "data":
            out += r.event.data.data
    return out


def test_tend_loads_tend_and_calls_reach_it_both_ways(client: tend_client.Client) -> None:
    tend = str(require_bin())
    info = client.loader.Load(
        lpb.LoadRequest(spec=lpb.PluginSpec(name="inner", binary=tend, args=["serve", "--handshake"])),
        timeout=TIMEOUT,
    ).plugin
    assert info.state == lpb.PLUGIN_STATE_SERVING, info
    assert "tend.v1.ProcessService" in info.services
    listed = [p.spec.name for p in client.loader.List(lpb.LoaderServiceListRequest(), timeout=TIMEOUT).plugins]
    assert listed == ["inner"]

    # Straight to the plugin's own socket.
    with tend_client.connect(f"unix://{info.address}") as inner:
        assert run_stdout(inner.process, pb.ProcessSpec(argv=["echo", "direct"])) == b"direct\n"
    # Through the host, with the header.
    out = run_stdout(client.process, pb.ProcessSpec(argv=["echo", "forwarded"]), metadata=(("tend-plugin", "inner"),))
    assert out == b"forwarded\n"

    gone = client.loader.Unload(lpb.UnloadRequest(name="inner", grace_ms=2000), timeout=TIMEOUT)
    assert gone.stage == lpb.UNLOAD_STAGE_SHUTDOWN, gone
    assert not os.path.exists(f"/proc/{info.pid}") or open(f"/proc/{info.pid}/stat").read().split()[2] == "Z"
    assert list(client.loader.List(lpb.LoaderServiceListRequest(), timeout=TIMEOUT).plugins) == []


def test_an_unknown_binary_is_not_found_naming_it(client: tend_client.Client) -> None:
    with pytest.raises(grpc.RpcError) as err:
        client.loader.Load(lpb.LoadRequest(spec=lpb.PluginSpec(name="x", binary="/no/such/plugin")), timeout=TIMEOUT)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "/no/such/plugin" in err.value.details()
