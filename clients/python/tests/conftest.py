"""Fixtures: the real tend daemon on a temporary state directory.

The binary is $TEND_BIN, else target/debug/tend at the repository root. Without it the
daemon tests skip, or fail under CI=true. Readiness is polled through the health service
with a bounded timeout; the daemon is stopped with SIGTERM (SIGKILL after a grace period).
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest

import tend_client

REPO_ROOT = Path(__file__).resolve().parents[3]
READY_TIMEOUT = 20.0
STOP_GRACE = 5.0


def tend_bin() -> Path:
    bin_ = os.environ.get("TEND_BIN")
    return Path(bin_).resolve() if bin_ else REPO_ROOT / "target" / "debug" / "tend"


def require_bin() -> Path:
    path = tend_bin()
    if not (path.is_file() and os.access(path, os.X_OK)):
        msg = f"tend binary not available at {path}: run `cargo build` or set TEND_BIN"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def require(component: str, why_missing: Optional[str]) -> None:
    """Go on when why_missing is None. Otherwise the test cannot run: under CI=true it fails
    (scripts/test installs and starts the engines there), elsewhere it skips saying why."""
    if why_missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"{component} is required under CI=true; scripts/test installs and starts it "
            f"({component} missing: {why_missing})"
        )
    pytest.skip(f"{component} missing: {why_missing}")


# The image scripts/docker-up imports into its private engine (busybox: sh, echo, sleep, ...).
BUSYBOX_IMAGE = "tend-test/busybox:latest"


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("docker", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def docker_api(method: str, path: str, timeout: float = 10.0) -> Tuple[int, bytes]:
    """(status, body) of one request to the Docker engine at $DOCKER_HOST (unix:// or
    tcp://), as a user of the engine sees it."""
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        conn: http.client.HTTPConnection = _UnixHTTPConnection(host[len("unix://") :], timeout)
    elif host.startswith("tcp://"):
        conn = http.client.HTTPConnection(host[len("tcp://") :].rstrip("/"), timeout=timeout)
    else:
        raise ValueError(f"DOCKER_HOST={host!r}: only unix:// and tcp:// are supported")
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def docker_missing() -> Optional[str]:
    """Why no Docker engine can be used, or None when $DOCKER_HOST answers GET /_ping. There
    is no fallback to the system's /var/run/docker.sock, as in the Rust tests."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host:
        return 'DOCKER_HOST is not set (scripts/test sets it; by hand: export "$(scripts/docker-up)")'
    try:
        status, _ = docker_api("GET", "/_ping", timeout=5.0)
    except (OSError, ValueError, http.client.HTTPException) as e:
        return f"DOCKER_HOST={host}: {e}"
    if status != 200:
        return f"DOCKER_HOST={host}: GET /_ping answered {status}"
    return None


def free_port() -> int:
    """A free loopback port; another process could take it before the daemon binds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env() -> dict:
    """The environment without the client variables, so a developer's TEND_ADDR or
    TEND_TOKEN cannot leak into the daemon or client under test."""
    env = dict(os.environ)
    for key in (tend_client.ENV_ADDR, tend_client.ENV_TOKEN, tend_client.ENV_STATE_DIR):
        env.pop(key, None)
    return env


@dataclass
class Daemon:
    dir: Path
    proc: subprocess.Popen
    log_path: Path
    args: List[str] = field(default_factory=list)

    @property
    def sock(self) -> Path:
        return self.dir / tend_client.SOCKET_NAME

    @property
    def addr(self) -> str:
        return f"unix://{self.sock}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def connect(self, token: Optional[str] = "") -> tend_client.Client:
        return tend_client.connect(self.addr, token=token)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        # The socket file first (cheap), then the health service.
        while not self.sock.exists() and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.01)
        with self.connect() as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"daemon exited early with {self.proc.returncode}\n{self.log()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"daemon not healthy within {READY_TIMEOUT}s\n{self.log()}")
                try:
                    client.wait_ready(timeout=min(1.0, remaining))
                    return
                except TimeoutError:
                    continue

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_GRACE)
                raise AssertionError(f"daemon ignored SIGTERM for {STOP_GRACE}s\n{self.log()}")


def start_daemon(*args: str) -> Daemon:
    bin_ = require_bin()
    # Short path: a unix socket path is limited to 107 bytes.
    state_dir = Path(tempfile.mkdtemp(prefix="tend-py-"))
    log_path = state_dir.parent / (state_dir.name + ".log")
    env = clean_env()
    env[tend_client.ENV_STATE_DIR] = str(state_dir)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(bin_), "serve", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    d = Daemon(dir=state_dir, proc=proc, log_path=log_path, args=list(args))
    try:
        d.wait_ready()
    except BaseException:
        d.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
        raise
    return d


@pytest.fixture
def make_daemon(request) -> Iterator:
    """A factory: make_daemon(*serve_args) starts a daemon, stopped at teardown."""
    started: List[Daemon] = []

    def make(*args: str) -> Daemon:
        d = start_daemon(*args)
        started.append(d)
        return d

    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for d in started:
        try:
            d.stop()
        finally:
            if failed:
                print(f"--- daemon log ({' '.join(d.args)}) ---\n{d.log()}")
            shutil.rmtree(d.dir, ignore_errors=True)
            d.log_path.unlink(missing_ok=True)


@pytest.fixture
def daemon(make_daemon) -> Daemon:
    return make_daemon()


@pytest.fixture
def client(daemon) -> Iterator[tend_client.Client]:
    with daemon.connect() as c:
        yield c


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
