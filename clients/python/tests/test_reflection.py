"""Server reflection (v1 and v1alpha) and the health service, as generic tools use them."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2

reflection = pytest.importorskip("grpc_reflection.v1alpha.reflection_pb2", reason="grpcio-reflection is not installed")
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (  # noqa: E402
    ProtoReflectionDescriptorDatabase,
)

TIMEOUT = 10.0
METHODS = "Start Run Connect Attach SendInput CloseInput Resize Signal Wait WaitReady Get List Watch Output Remove".split()
RUNNER_METHODS = (
    "CreateEnvironment InitEnvironment StopEnvironment ShutdownEnvironment ListEnvironments GetEnvironment "
    "Capabilities Reap FindFreePort"
).split()


def reflect(channel, version: str, request):
    # v1 and v1alpha messages are the same on the wire; only the service name differs.
    call = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection.ServerReflectionResponse.FromString,
    )
    (resp,) = list(call(iter([request]), timeout=TIMEOUT))
    return resp


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection(client, version):
    resp = reflect(client.channel, version, reflection.ServerReflectionRequest(list_services=""))
    names = {s.name for s in resp.list_services_response.service}
    assert {"tend.v1.ProcessService", "tend.v1.AgentService", "tend.v1.RunnerService", "grpc.health.v1.Health"} <= names, names
    # Only what this daemon serves: PluginService is a plugin-mode daemon's (tend serve --handshake).
    assert "tend.v1.PluginService" not in names, names

    resp = reflect(
        client.channel, version, reflection.ServerReflectionRequest(file_containing_symbol="tend.v1.ProcessService")
    )
    files = [descriptor_pb2.FileDescriptorProto.FromString(b) for b in resp.file_descriptor_response.file_descriptor_proto]
    services = {s.name: s for f in files if f.package == "tend.v1" for s in f.service}
    assert [m.name for m in services["ProcessService"].method] == METHODS


def test_reflection_descriptor_database(client):
    # What grpcio-reflection's own client (and tools built on it) do.
    pool = DescriptorPool(ProtoReflectionDescriptorDatabase(client.channel))
    svc = pool.FindServiceByName("tend.v1.ProcessService")
    assert [m.name for m in svc.methods] == METHODS
    attach = svc.methods_by_name["Attach"]
    assert attach.client_streaming and attach.server_streaming
    assert pool.FindMessageTypeByName("tend.v1.ProcessSpec").fields_by_name["argv"].number == 1
    runner = pool.FindServiceByName("tend.v1.RunnerService")
    assert [m.name for m in runner.methods] == RUNNER_METHODS
    assert runner.methods_by_name["InitEnvironment"].server_streaming


def test_health(client):
    serving = health_pb2.HealthCheckResponse.SERVING
    assert client.health.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT).status == serving
    for service in ("tend.v1.ProcessService", "tend.v1.AgentService", "tend.v1.RunnerService"):
        req = health_pb2.HealthCheckRequest(service=service)
        assert client.health.Check(req, timeout=TIMEOUT).status == serving, service
    with pytest.raises(grpc.RpcError) as err:
        client.health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=TIMEOUT)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
