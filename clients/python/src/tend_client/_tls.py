"""TLS to a ``tls://`` daemon: verified by a CA file or a pinned SHA-256 fingerprint before
any call is sent, with a client certificate for mTLS."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
from typing import Optional

import grpc

from tend_client._address import Address, default_state_dir

ENV_TLS_CA = "TEND_TLS_CA"
ENV_TLS_FINGERPRINT = "TEND_TLS_FINGERPRINT"
ENV_TLS_CLIENT_CERT = "TEND_TLS_CLIENT_CERT"
ENV_TLS_CLIENT_KEY = "TEND_TLS_CLIENT_KEY"
#: The certificate the daemon generates for its TLS listeners, in its state directory.
GENERATED_CERT_NAME = "tls-cert.pem"


def parse_fingerprint(s: str) -> bytes:
    """The 32 bytes of ``sha256:AB:CD:...``, ``sha256:abcd...`` or bare hex."""
    t = s.strip()
    if t[:7].lower() == "sha256:":
        t = t[7:]
    t = t.replace(":", "").replace(" ", "")
    try:
        b = bytes.fromhex(t)
    except ValueError:
        b = b""
    if len(b) != 32:
        raise ValueError(f"tend: TLS fingerprint {s!r}: want sha256: and 64 hex digits, as `tend serve` logs it")
    return b


def _host_port(address: Address) -> tuple:
    host, _, port = address.address.rpartition(":")
    return host.strip("[]"), int(port)


def _pinned_certificate(
    address: Address,
    want: bytes,
    timeout: float,
    ca: Optional[str],
    client: Optional[tuple],
) -> bytes:
    """The daemon's certificate (PEM), once its fingerprint is the pinned one (and, with
    ``ca``, once the CA verified it too).

    It then becomes the channel's only root: the channel trusts that certificate and no
    other, so nobody without its key can stand in for the daemon later.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca:
        ctx.load_verify_locations(cafile=ca)
    else:
        # Checked below, by fingerprint, as ssh checks a host key.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if client:
        ctx.load_cert_chain(*client)
    ctx.set_alpn_protocols(["h2"])
    host, port = _host_port(address)
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    got = hashlib.sha256(der or b"").digest()
    if got != want:
        raise ConnectionRefusedError(
            f"tend: the daemon's certificate at {address} is sha256:{got.hex()}, not the pinned "
            f"sha256:{want.hex()}: this is not the daemon you pinned, or its certificate changed"
        )
    return ssl.DER_cert_to_PEM_cert(der).encode()


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"tend: {what} {path}: {e}") from e


def channel_credentials(
    address: Address,
    ca: Optional[str] = None,
    fingerprint: Optional[str] = None,
    client_cert: Optional[str] = None,
    client_key: Optional[str] = None,
    timeout: float = 10.0,
) -> grpc.ChannelCredentials:
    """Credentials for a ``tls://`` address.

    ``ca``: the CA file (PEM), else ``$TEND_TLS_CA``. ``fingerprint``: ``sha256:<hex>`` of
    the daemon's certificate, else ``$TEND_TLS_FINGERPRINT``; it is checked now, so a wrong
    one raises :class:`ConnectionRefusedError` before any call is sent (the certificate is
    then the channel's root: pinning suits the daemon's generated, self-signed certificate;
    give the CA for one a CA signed). With neither, the local daemon's generated certificate
    (``<state dir>/tls-cert.pem``) when there is one; else :class:`ValueError`.
    ``client_cert``/``client_key``: PEM files (else ``$TEND_TLS_CLIENT_CERT``/``_KEY``).
    """
    ca = ca if ca is not None else os.environ.get(ENV_TLS_CA) or None
    fingerprint = fingerprint if fingerprint is not None else os.environ.get(ENV_TLS_FINGERPRINT) or None
    client_cert = client_cert if client_cert is not None else os.environ.get(ENV_TLS_CLIENT_CERT) or None
    client_key = client_key if client_key is not None else os.environ.get(ENV_TLS_CLIENT_KEY) or None
    if not ca and not fingerprint:
        local = os.path.join(default_state_dir(), GENERATED_CERT_NAME)
        if not os.path.exists(local):
            raise ValueError(
                "tend: tls://: give the daemon's CA (tls_ca or TEND_TLS_CA; for a generated "
                "certificate, its tls-cert.pem) or its fingerprint (tls_fingerprint or "
                "TEND_TLS_FINGERPRINT), as `tend serve` logs them"
            )
        ca = local
    if bool(client_cert) != bool(client_key):
        raise ValueError("tend: give both tls_client_cert and tls_client_key")
    if fingerprint:
        client = (client_cert, client_key) if client_cert else None
        roots = _pinned_certificate(address, parse_fingerprint(fingerprint), timeout, ca, client)
    else:
        roots = _read(ca, "TLS CA")
    return grpc.ssl_channel_credentials(
        root_certificates=roots,
        private_key=_read(client_key, "TLS client key") if client_key else None,
        certificate_chain=_read(client_cert, "TLS client certificate") if client_cert else None,
    )
