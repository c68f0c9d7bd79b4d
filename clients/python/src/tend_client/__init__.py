"""Python client for the tend daemon.

>>> import tend_client
>>> from tend_client import process_pb2 as pb
>>> with tend_client.connect() as client:                       # doctest: +SKIP
...     client.process.Start(pb.StartRequest(spec=pb.ProcessSpec(argv=["true"])))

``connect`` / ``connect_async`` understand ``unix:///path``, ``tls://host:port`` (verified
by CA or pinned fingerprint: ``tls_ca``/``tls_fingerprint``, ``$TEND_TLS_CA``,
``$TEND_TLS_FINGERPRINT``), ``tcp://host:port``, ``$TEND_ADDR``, ``$TEND_TOKEN`` and the
default socket location. The messages and stubs
are generated from ``proto/tend/v1`` (``tend_client.process_pb2``,
``tend_client.process_pb2_grpc``, ``tend_client.agent_pb2``, ``tend_client.agent_pb2_grpc``,
``tend_client.runner_pb2``, ``tend_client.runner_pb2_grpc``, ``tend_client.loader_pb2``,
``tend_client.loader_pb2_grpc``). ``client.process`` is the ProcessService stub,
``client.agent`` the AgentService one, ``client.runner`` the RunnerService one
(environments: native, Docker, Nix), ``client.loader`` the LoaderService one (plugins).
"""

from tend_client._address import (
    ENV_ADDR,
    ENV_STATE_DIR,
    ENV_TOKEN,
    SOCKET_NAME,
    Address,
    default_socket_path,
    default_state_dir,
    parse_address,
    resolve_token,
)
from tend_client._client import AsyncClient, Client, connect, connect_async
from tend_client._tls import (
    ENV_TLS_CA,
    ENV_TLS_CLIENT_CERT,
    ENV_TLS_CLIENT_KEY,
    ENV_TLS_FINGERPRINT,
    GENERATED_CERT_NAME,
    parse_fingerprint,
)
from tend_client._gen.tend.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    loader_pb2,
    loader_pb2_grpc,
    process_pb2,
    process_pb2_grpc,
    runner_pb2,
    runner_pb2_grpc,
)

__version__ = "0.1.0"

__all__ = [
    "ENV_ADDR",
    "ENV_STATE_DIR",
    "ENV_TLS_CA",
    "ENV_TLS_CLIENT_CERT",
    "ENV_TLS_CLIENT_KEY",
    "ENV_TLS_FINGERPRINT",
    "ENV_TOKEN",
    "GENERATED_CERT_NAME",
    "SOCKET_NAME",
    "Address",
    "AsyncClient",
    "Client",
    "agent_pb2",
    "agent_pb2_grpc",
    "connect",
    "connect_async",
    "loader_pb2",
    "loader_pb2_grpc",
    "default_socket_path",
    "default_state_dir",
    "parse_address",
    "parse_fingerprint",
    "process_pb2",
    "process_pb2_grpc",
    "resolve_token",
    "runner_pb2",
    "runner_pb2_grpc",
]
