"""A user who generates their own stubs from proto/ and opens a plain grpcio channel on the
unix socket, with no options: grpcio sends the %-encoded socket path as :authority, which
tend serves as if it said localhost."""

from __future__ import annotations

import importlib
import subprocess
import sys

import grpc

from conftest import REPO_ROOT


def own_stubs(tmp_path):
    """process_pb2 and process_pb2_grpc generated into tmp_path, as a user would."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{REPO_ROOT / 'proto'}",
            f"--python_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            "tend/v1/process.proto",
        ],
        check=True,
    )
    sys.path.insert(0, str(tmp_path))
    try:
        pb = importlib.import_module("tend.v1.process_pb2")
        stubs = importlib.import_module("tend.v1.process_pb2_grpc")
    finally:
        sys.path.remove(str(tmp_path))
    return pb, stubs


def test_a_plain_unix_channel_with_generated_stubs_runs_a_command(daemon, tmp_path):
    pb, stubs = own_stubs(tmp_path)
    with grpc.insecure_channel(f"unix://{daemon.sock}") as channel:
        stub = stubs.ProcessServiceStub(channel)
        kinds, out, code = [], b"", None
        for r in stub.Run(pb.RunRequest(spec=pb.ProcessSpec(argv=["sh", "-c", "echo hi; exit 4"]))):
            kind = r.event.WhichOneof("kind")
            kinds.append(kind)
            if kind == "data":
                out += r.event.data.data
            elif kind == "exited":
                code = r.event.exited.exit_code
        assert kinds[0] == "started" and kinds[-1] == "exited"
        assert (out, code) == (b"hi\n", 4)
        listed = stub.List(pb.ListRequest())
        assert [p.argv[0] for p in listed.processes] == ["sh"]


def test_a_plain_unix_channel_answers_health(daemon):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"unix://{daemon.sock}") as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert status.status == health_pb2.HealthCheckResponse.SERVING
