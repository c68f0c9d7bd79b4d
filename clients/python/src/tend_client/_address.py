"""Daemon addresses: the forms clients accept, TEND_ADDR, and the default socket."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

ENV_ADDR = "TEND_ADDR"
ENV_TOKEN = "TEND_TOKEN"
ENV_STATE_DIR = "TEND_STATE_DIR"
SOCKET_NAME = "tend.sock"


def default_state_dir() -> str:
    """The daemon's state directory, computed as the daemon does.

    ``$TEND_STATE_DIR``, else ``$XDG_RUNTIME_DIR/tend``, else ``~/.tend``. Empty
    variables count as unset.
    """
    state_dir = os.environ.get(ENV_STATE_DIR)
    if state_dir:
        return state_dir
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        return os.path.join(runtime_dir, "tend")
    return os.path.join(os.environ.get("HOME") or "/", ".tend")  # "/" as the daemon does


def default_socket_path() -> str:
    """The daemon's default unix socket: ``default_state_dir()/tend.sock``."""
    return os.path.join(default_state_dir(), SOCKET_NAME)


@dataclass(frozen=True)
class Address:
    """A resolved daemon address."""

    #: "unix", "tls" or "tcp".
    network: str
    #: The socket path, or host:port.
    address: str

    @property
    def grpc_target(self) -> str:
        """The target string for ``grpc.insecure_channel``."""
        if self.network == "unix":
            # gRPC's unix resolver: "unix:/abs/path" or "unix:relative/path".
            return "unix:" + self.address
        return self.address

    def __str__(self) -> str:
        return f"{self.network}://{self.address}"


def parse_address(addr: Optional[str] = None) -> Address:
    """Resolve a daemon address.

    Accepted forms, as the tend CLI accepts them: ``unix:///abs/path``,
    ``tls://host:port``, ``tcp://host:port`` and a bare socket path (anything without ``://``); also gRPC's
    ``unix:path``. ``None`` or ``""`` means ``$TEND_ADDR``, and when that is unset too,
    the default socket (:func:`default_socket_path`).
    """
    if not addr:
        addr = os.environ.get(ENV_ADDR, "")
    if not addr:
        return Address("unix", default_socket_path())
    if addr.startswith("unix://"):
        path = addr[len("unix://") :]
    elif addr.startswith("unix:"):
        path = addr[len("unix:") :]
    elif addr.startswith("tcp://") or addr.startswith("tls://"):
        scheme = addr[:3]
        hostport = addr[len("tcp://") :].rstrip("/")
        host, sep, port = hostport.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"tend: address {addr!r}: want {scheme}://host:port")
        return Address(scheme, hostport)
    elif "://" in addr:
        raise ValueError(
            f"tend: address {addr!r}: want unix:///path/to/tend.sock, tls://host:port or tcp://host:port"
        )
    else:
        path = addr
    if not path:
        raise ValueError(f"tend: address {addr!r}: empty socket path")
    return Address("unix", path)


def resolve_token(token: Optional[str] = None) -> Optional[str]:
    """The bearer token: ``token`` if given (``""`` means none), else ``$TEND_TOKEN``."""
    if token is None:
        token = os.environ.get(ENV_TOKEN)
    return token or None
