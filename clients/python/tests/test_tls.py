"""tls:// daemons: the generated certificate verified by CA or pinned fingerprint (a wrong
one refused before any call), the token still required, and client certificates (mTLS)."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import ssl
import subprocess
from pathlib import Path

import grpc
import pytest

import tend_client
from conftest import free_port, require
from tend_client import process_pb2 as pb

TIMEOUT = 20.0


def tls_daemon(make_daemon, *args: str):
    addr = f"tls://127.0.0.1:{free_port()}"
    d = make_daemon("--listen", addr, *args)
    cert = d.dir / tend_client.GENERATED_CERT_NAME
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    fingerprint = "sha256:" + hashlib.sha256(der).hexdigest()
    token = (d.dir / "token").read_text().strip()
    return d, addr, str(cert), fingerprint, token


def listed(addr: str, **kw) -> None:
    with tend_client.connect(addr, **kw) as c:
        c.process.List(pb.ListRequest(), timeout=TIMEOUT)


@pytest.fixture
def no_tls_env(monkeypatch, tmp_path):
    for k in ("TEND_TLS_CA", "TEND_TLS_FINGERPRINT", "TEND_TLS_CLIENT_CERT", "TEND_TLS_CLIENT_KEY", "TEND_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    # No generated certificate of a local daemon to fall back on.
    monkeypatch.setenv("TEND_STATE_DIR", str(tmp_path / "nothing-here"))


def test_tls_by_ca_or_fingerprint(make_daemon, monkeypatch, no_tls_env):
    _, addr, cert, fp, token = tls_daemon(make_daemon)
    assert tend_client.parse_address(addr).network == "tls"
    listed(addr, token=token, tls_ca=cert)
    listed(addr, token=token, tls_fingerprint=fp)
    listed(addr, token=token, tls_fingerprint=":".join(fp[7:][i : i + 2] for i in range(0, 64, 2)).upper())
    monkeypatch.setenv("TEND_TLS_FINGERPRINT", fp)
    listed(addr, token=token)
    monkeypatch.delenv("TEND_TLS_FINGERPRINT")
    monkeypatch.setenv("TEND_TLS_CA", cert)
    listed(addr, token=token)

    # The token is still required.
    with pytest.raises(grpc.RpcError) as err:
        listed(addr, token="")
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

    async def run_async():
        async with tend_client.connect_async(addr, token=token, tls_fingerprint=fp) as c:
            st = await c.process.Start(pb.StartRequest(spec=pb.ProcessSpec(argv=["true"])), timeout=TIMEOUT)
            return st.process.id

    assert asyncio.run(run_async())
    monkeypatch.delenv("TEND_TLS_CA")

    # A wrong fingerprint: refused in connect(), before any call.
    with pytest.raises(ConnectionRefusedError, match="not the pinned"):
        tend_client.connect(addr, token=token, tls_fingerprint="sha256:" + "00" * 32)
    # Neither CA nor fingerprint: says what to give.
    with pytest.raises(ValueError, match="TEND_TLS_FINGERPRINT"):
        tend_client.connect(addr, token=token)


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(dir: Path, name: str) -> None:
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}-key.pem", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,digitalSignature",
        cwd=dir,
    )


def make_client(dir: Path, cn: str, ca: str) -> tuple:
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{cn}-key.pem", "-out", f"{cn}.csr", "-subj", f"/CN={cn}", cwd=dir,
    )
    (dir / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    openssl(
        "x509", "-req", "-in", f"{cn}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem",
        "-CAcreateserial", "-out", f"{cn}.pem", "-days", "2", "-extfile", "client.ext", cwd=dir,
    )
    return str(dir / f"{cn}.pem"), str(dir / f"{cn}-key.pem")


def test_tls_client_certificate(make_daemon, tmp_path, no_tls_env):
    require("openssl", None if shutil.which("openssl") else "no openssl on PATH")
    make_ca(tmp_path, "clients-ca")
    make_ca(tmp_path, "other-ca")
    alice = make_client(tmp_path, "alice", "clients-ca")
    mallory = make_client(tmp_path, "mallory", "other-ca")
    _, addr, cert, fp, token = tls_daemon(make_daemon, "--tls-client-ca", str(tmp_path / "clients-ca.pem"))

    listed(addr, token="", tls_ca=cert, tls_client_cert=alice[0], tls_client_key=alice[1])
    listed(addr, token="", tls_fingerprint=fp, tls_client_cert=alice[0], tls_client_key=alice[1])
    with pytest.raises(grpc.RpcError) as err:
        listed(addr, token="", tls_ca=cert)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    listed(addr, token=token, tls_ca=cert)
    with pytest.raises(grpc.RpcError) as err:
        listed(addr, token=token, tls_ca=cert, tls_client_cert=mallory[0], tls_client_key=mallory[1])
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
