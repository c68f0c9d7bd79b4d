"""Address resolution: the forms, TEND_ADDR, and the default socket location."""

import pytest

import tend_client
from tend_client import Address, default_socket_path, parse_address, resolve_token


@pytest.mark.parametrize(
    "addr, want",
    [
        ("unix:///run/tend/tend.sock", Address("unix", "/run/tend/tend.sock")),
        ("unix:/run/tend.sock", Address("unix", "/run/tend.sock")),
        ("unix:rel/tend.sock", Address("unix", "rel/tend.sock")),
        ("/run/tend.sock", Address("unix", "/run/tend.sock")),
        ("run/tend.sock", Address("unix", "run/tend.sock")),
        ("tcp://127.0.0.1:7070", Address("tcp", "127.0.0.1:7070")),
        ("tcp://[::1]:7070/", Address("tcp", "[::1]:7070")),
        ("tls://tend.example:7443/", Address("tls", "tend.example:7443")),
    ],
)
def test_parse_address(addr, want, monkeypatch):
    monkeypatch.delenv("TEND_ADDR", raising=False)
    assert parse_address(addr) == want


@pytest.mark.parametrize("addr", ["tcp://127.0.0.1", "tcp://:80", "tls://x", "unix://", "http://x:1"])
def test_parse_address_rejects(addr):
    with pytest.raises(ValueError, match="tend: address"):
        parse_address(addr)


def test_grpc_target():
    assert Address("unix", "/s/tend.sock").grpc_target == "unix:/s/tend.sock"
    assert Address("tcp", "127.0.0.1:1").grpc_target == "127.0.0.1:1"
    assert str(Address("unix", "/s/tend.sock")) == "unix:///s/tend.sock"


def test_env_addr_and_default(monkeypatch):
    monkeypatch.setenv("TEND_ADDR", "tcp://localhost:9")
    assert parse_address() == Address("tcp", "localhost:9")
    assert parse_address("unix:///x.sock") == Address("unix", "/x.sock")  # explicit wins
    monkeypatch.delenv("TEND_ADDR")
    monkeypatch.setenv("TEND_STATE_DIR", "/state")
    assert parse_address() == Address("unix", "/state/tend.sock")


@pytest.mark.parametrize(
    "state_dir, xdg, home, want",
    [
        ("/s", "/x", "/h", "/s/tend.sock"),
        ("", "/run/user/1000", "/h", "/run/user/1000/tend/tend.sock"),
        (None, None, "/home/me", "/home/me/.tend/tend.sock"),
        (None, None, None, "/.tend/tend.sock"),
    ],
)
def test_default_socket_path(state_dir, xdg, home, want, monkeypatch):
    for key, value in (("TEND_STATE_DIR", state_dir), ("XDG_RUNTIME_DIR", xdg), ("HOME", home)):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    assert default_socket_path() == want


def test_resolve_token(monkeypatch):
    monkeypatch.setenv("TEND_TOKEN", "from-env")
    assert resolve_token() == "from-env"
    assert resolve_token("given") == "given"
    assert resolve_token("") is None
    monkeypatch.delenv("TEND_TOKEN")
    assert resolve_token() is None


def test_connect_is_lazy():
    # No daemon needed: the channel connects on the first call.
    with tend_client.connect("unix:///nonexistent/tend.sock") as client:
        assert client.address == Address("unix", "/nonexistent/tend.sock")
        with pytest.raises(TimeoutError, match="no healthy daemon"):
            client.wait_ready(timeout=0.3)


def test_parse_fingerprint():
    want = bytes([0xAB] * 32)
    for s in ("sha256:" + "ab" * 32, "SHA256:" + ":".join(["AB"] * 32), "ab" * 32):
        assert tend_client.parse_fingerprint(s) == want
    for bad in ("sha256:abcd", "", "zz" * 32):
        with pytest.raises(ValueError, match="64 hex digits"):
            tend_client.parse_fingerprint(bad)
