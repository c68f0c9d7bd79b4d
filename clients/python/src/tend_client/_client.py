"""Channels to the daemon, sync and asyncio, with the bearer token on every call."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any, Generator, Optional, Sequence, Tuple

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tend_client._address import Address, parse_address, resolve_token
from tend_client._tls import channel_credentials
from tend_client._gen.tend.v1 import (
    agent_pb2_grpc,
    loader_pb2_grpc,
    process_pb2_grpc,
    runner_pb2_grpc,
)

ChannelOptions = Sequence[Tuple[str, Any]]

# Output views and Run/Connect data events stay small, but a client may ask Output for
# large heads and tails: allow more than gRPC's 4 MiB default.
_DEFAULT_OPTIONS: ChannelOptions = (
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # The daemon is local: reconnect quickly after it (re)starts, rather than after gRPC's
    # default 1 s initial backoff.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


def _with_token(metadata: Any, token: str) -> list:
    return [*(metadata or ()), ("authorization", f"Bearer {token}")]


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    pass


class _TokenInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <token>`` to every call of a sync channel.

    An interceptor rather than call credentials: gRPC only sends call credentials over a
    secure channel, and the daemon also speaks plaintext (a 0600 unix socket, or TCP on
    loopback, guarded by this token).
    """

    def __init__(self, token: str) -> None:
        self._token = token

    def _details(self, d: grpc.ClientCallDetails) -> _CallDetails:
        return _CallDetails(
            d.method,
            d.timeout,
            _with_token(d.metadata, self._token),
            d.credentials,
            getattr(d, "wait_for_ready", None),
            getattr(d, "compression", None),
        )

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)


class _AsyncTokenInterceptor:
    """The asyncio counterpart of :class:`_TokenInterceptor`."""

    def __init__(self, token: str) -> None:
        self._token = token

    def _details(self, d: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        return grpc.aio.ClientCallDetails(
            d.method,
            d.timeout,
            grpc.aio.Metadata(*_with_token(d.metadata, self._token)),
            d.credentials,
            d.wait_for_ready,
        )


class _AsyncUnaryUnary(_AsyncTokenInterceptor, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


class _AsyncUnaryStream(_AsyncTokenInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


class _AsyncStreamUnary(_AsyncTokenInterceptor, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details), request_iterator)


class _AsyncStreamStream(_AsyncTokenInterceptor, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details), request_iterator)


def _ready_error(address: Address, timeout: float, last: Optional[BaseException]) -> TimeoutError:
    return TimeoutError(f"tend: no healthy daemon at {address} within {timeout:g}s (last error: {last})")


class Client:
    """A synchronous connection to the daemon.

    ``process`` is the ``tend.v1.ProcessService`` stub, ``agent`` the
    ``tend.v1.AgentService`` stub, ``runner`` the ``tend.v1.RunnerService`` stub (the
    environments processes and agents run in: native, Docker, Nix), ``loader`` the
    ``tend.v1.LoaderService`` stub (plugins) and ``health`` the
    ``grpc.health.v1.Health`` stub;
    ``channel`` is the underlying ``grpc.Channel``. Use it as a context manager, or call
    :meth:`close`.
    """

    def __init__(self, channel: grpc.Channel, address: Address) -> None:
        self.channel = channel
        self.address = address
        self.process = process_pb2_grpc.ProcessServiceStub(channel)
        self.agent = agent_pb2_grpc.AgentServiceStub(channel)
        self.runner = runner_pb2_grpc.RunnerServiceStub(channel)
        self.loader = loader_pb2_grpc.LoaderServiceStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)

    def wait_ready(self, timeout: float = 10.0, interval: float = 0.05) -> None:
        """Poll the health service until the daemon answers SERVING, at most ``timeout`` s.

        Raises :class:`TimeoutError` (naming the last error) when it does not.
        """
        deadline = time.monotonic() + timeout
        last: Optional[BaseException] = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _ready_error(self.address, timeout, last)
            try:
                resp = self.health.Check(health_pb2.HealthCheckRequest(), timeout=min(1.0, remaining))
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = RuntimeError(f"health status {health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)}")
            except grpc.RpcError as e:
                last = e
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<tend_client.Client {self.address}>"


class AsyncClient:
    """An asyncio connection to the daemon; the stubs return awaitables and async iterators.

    Use it with ``async with``, or ``client = await connect_async(...)`` and
    ``await client.close()``.
    """

    def __init__(self, channel: grpc.aio.Channel, address: Address) -> None:
        self.channel = channel
        self.address = address
        self.process = process_pb2_grpc.ProcessServiceStub(channel)
        self.agent = agent_pb2_grpc.AgentServiceStub(channel)
        self.runner = runner_pb2_grpc.RunnerServiceStub(channel)
        self.loader = loader_pb2_grpc.LoaderServiceStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)

    async def wait_ready(self, timeout: float = 10.0, interval: float = 0.05) -> None:
        """Poll the health service until the daemon answers SERVING, at most ``timeout`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last: Optional[BaseException] = None
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise _ready_error(self.address, timeout, last)
            try:
                resp = await self.health.Check(health_pb2.HealthCheckRequest(), timeout=min(1.0, remaining))
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = RuntimeError(f"health status {health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)}")
            except grpc.RpcError as e:
                last = e
            await asyncio.sleep(min(interval, max(0.0, deadline - loop.time())))

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __await__(self) -> Generator[Any, None, "AsyncClient"]:
        # `client = await connect_async()` as well as `async with connect_async() as client`.
        async def _self() -> "AsyncClient":
            return self

        return _self().__await__()

    def __repr__(self) -> str:
        return f"<tend_client.AsyncClient {self.address}>"


def _options(address: Address, options: Optional[ChannelOptions]) -> list:
    merged = dict(_DEFAULT_OPTIONS)
    if address.network == "unix":
        # gRPC sends the socket path as the HTTP/2 :authority of a unix target; the daemon's
        # HTTP/2 server (h2) rejects a path there (RST_STREAM PROTOCOL_ERROR). Send a host
        # name instead, as grpc-go does for unix sockets.
        merged["grpc.default_authority"] = "localhost"
    merged.update(dict(options or ()))
    return list(merged.items())


def _credentials(address: Address, tls: dict) -> Optional[grpc.ChannelCredentials]:
    if address.network != "tls":
        return None
    return channel_credentials(
        address,
        ca=tls.get("tls_ca"),
        fingerprint=tls.get("tls_fingerprint"),
        client_cert=tls.get("tls_client_cert"),
        client_key=tls.get("tls_client_key"),
    )


def connect(
    addr: Optional[str] = None,
    token: Optional[str] = None,
    *,
    options: Optional[ChannelOptions] = None,
    tls_ca: Optional[str] = None,
    tls_fingerprint: Optional[str] = None,
    tls_client_cert: Optional[str] = None,
    tls_client_key: Optional[str] = None,
) -> Client:
    """Open a synchronous connection to the daemon.

    ``addr``: ``unix:///path/to/tend.sock``, ``tls://host:port`` or ``tcp://host:port``;
    ``None`` means ``$TEND_ADDR``, else the default socket. ``token``: the bearer token;
    ``None`` means ``$TEND_TOKEN``, ``""`` none. ``options``: extra gRPC channel options.

    For ``tls://``: ``tls_ca`` (else ``$TEND_TLS_CA``) is the CA file the daemon's
    certificate must chain to; ``tls_fingerprint`` (else ``$TEND_TLS_FINGERPRINT``) pins
    the daemon's certificate by its SHA-256 (``sha256:<hex>``), checked here, before any
    call (a wrong one raises :class:`ConnectionRefusedError`); ``tls_client_cert`` and
    ``tls_client_key`` (else ``$TEND_TLS_CLIENT_CERT``/``_KEY``) are a client certificate
    for a daemon with ``--tls-client-ca``. See :func:`tend_client._tls.channel_credentials`.

    The channel connects lazily: the first call fails with ``UNAVAILABLE`` when no
    daemon listens (:meth:`Client.wait_ready` waits for one, bounded).
    """
    address = parse_address(addr)
    creds = _credentials(
        address,
        dict(tls_ca=tls_ca, tls_fingerprint=tls_fingerprint, tls_client_cert=tls_client_cert, tls_client_key=tls_client_key),
    )
    if creds is not None:
        channel = grpc.secure_channel(address.grpc_target, creds, options=_options(address, options))
    else:
        channel = grpc.insecure_channel(address.grpc_target, options=_options(address, options))
    tok = resolve_token(token)
    if tok:
        channel = grpc.intercept_channel(channel, _TokenInterceptor(tok))
    return Client(channel, address)


def connect_async(
    addr: Optional[str] = None,
    token: Optional[str] = None,
    *,
    options: Optional[ChannelOptions] = None,
    tls_ca: Optional[str] = None,
    tls_fingerprint: Optional[str] = None,
    tls_client_cert: Optional[str] = None,
    tls_client_key: Optional[str] = None,
) -> AsyncClient:
    """Open an asyncio connection to the daemon; arguments as in :func:`connect`.

    Call it from the event loop that will use it (a ``grpc.aio`` channel is bound to its
    loop). The result is an async context manager, and also awaitable.
    """
    address = parse_address(addr)
    tok = resolve_token(token)
    interceptors = (
        [_AsyncUnaryUnary(tok), _AsyncUnaryStream(tok), _AsyncStreamUnary(tok), _AsyncStreamStream(tok)]
        if tok
        else None
    )
    creds = _credentials(
        address,
        dict(tls_ca=tls_ca, tls_fingerprint=tls_fingerprint, tls_client_cert=tls_client_cert, tls_client_key=tls_client_key),
    )
    if creds is not None:
        channel = grpc.aio.secure_channel(
            address.grpc_target, creds, options=_options(address, options), interceptors=interceptors
        )
    else:
        channel = grpc.aio.insecure_channel(
            address.grpc_target, options=_options(address, options), interceptors=interceptors
        )
    return AsyncClient(channel, address)
