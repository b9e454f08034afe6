"""Small helpers shared by test folders."""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

TEST_PORTS = range(20000, 32768)
"""Where servers started by tests listen: above Ray's worker ports (10002-19999) and below the
kernel's ephemeral ports (32768 up), where Ray's other processes bind. A port the kernel hands
out (bind to port 0) could be taken by a Ray process between the test choosing it and the
server binding it, which failed a serve test once with "Failed to bind"."""

_handed_out: set[int] = set()


def free_port() -> int:
    """A port in :data:`TEST_PORTS` that is free now and not handed out before in this process."""
    for _ in range(1000):
        port = random.choice(TEST_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {TEST_PORTS}")


def wait_until(
    check: Callable[[], bool], *, timeout: float, what: str, every: float = 0.25
) -> None:
    """Poll ``check`` until it is true; fail after ``timeout`` seconds (bounded, never hangs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def answers(url: str, status: int = 200) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == status
        except httpx.HTTPError:
            return False

    return check


REQUIRE_REDIS_ENV = "HARMONYSPEECH_REQUIRE_REDIS"
"""Set to 1 (as .ci/run does) to fail, not skip, the tests that need a redis-server."""


def redis_binary() -> str:
    """Path of ``redis-server``; skips the test without it (fails under REQUIRE_REDIS_ENV=1)."""
    import pytest

    binary = shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.access(p, os.X_OK)),
        None,
    )
    missing = None
    if binary is None:
        missing = (
            "redis-server is not installed (make redis-server, or apt-get install redis-server)"
        )
    elif importlib.util.find_spec("redis") is None:
        missing = "the redis package is not installed (pip install -e '.[redis]')"
    if missing is None:
        assert binary is not None
        return binary
    if os.environ.get(REQUIRE_REDIS_ENV) == "1":
        pytest.fail(f"{missing}; {REQUIRE_REDIS_ENV}=1 requires it")
    pytest.skip(missing)


class RedisServer:
    """A throwaway ``redis-server`` on a free loopback port: no persistence, its own directory.

    Use as a context manager, or call ``start``/``stop``; ``stop`` is safe to call twice.
    """

    def __init__(self, directory: Path, binary: str | None = None):
        self.directory = directory
        self.binary = binary or redis_binary()
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, timeout: float = 10.0, attempts: int = 3) -> RedisServer:
        for _ in range(attempts):
            self.port = free_port()
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(self.directory),
                    "--logfile", str(self.directory / f"redis-{self.port}.log"),
                    "--daemonize", "no",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.process.poll() is None:
                if self.ping():
                    return self
                time.sleep(0.05)
            self.stop()  # the port was taken meanwhile, or it never answered: try another
        raise TimeoutError(f"redis-server did not answer within {timeout:.0f} s ({attempts} tries)")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        terminate(process, grace_s=5)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def terminate(process: subprocess.Popen, *, grace_s: float) -> None:
    """SIGTERM ``process``, and SIGKILL it if it has not exited within ``grace_s`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    """``(name, labels, value)`` of every sample a Prometheus endpoint serves; [] while it
    does not answer."""
    try:
        text = httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return []
    return parse_samples(text)


def parse_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """``(name, labels, value)`` of every sample in Prometheus text exposition."""
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


@asynccontextmanager
async def asgi_client(runtime: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the app over an ``EngineRuntime``, in this process (no sockets)."""
    from harmonyspeech.api.app import create_app

    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
