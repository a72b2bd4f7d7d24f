"""A real ``redis-server`` (Debian's package, which ``make test`` installs) for cluster mode.

Each :class:`RedisServer` runs in a temporary directory on a free loopback port, with no
persistence, and can be stopped and started again on the same port (a Redis restart, its data
gone). Use the ``redis_server`` fixture (one per test) or ``make_redis`` for several.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator

import pytest

#: How long a start or a stop may take before the test fails.
START_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1."""

    def __init__(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:  # make test installs it; say so rather than skip
            raise RuntimeError("redis-server is not installed: run make test (it installs it)")
        self.executable = executable
        self.port = _free_port()
        self.directory = tempfile.mkdtemp(prefix="tc-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        # No persistence: a restart is a Redis that lost its data.
        options = {"port": str(self.port), "bind": "127.0.0.1", "dir": self.directory}
        options |= {"save": "", "appendonly": "no", "protected-mode": "yes"}
        arguments = [part for name, value in options.items() for part in (f"--{name}", value)]
        self.process = subprocess.Popen(
            [self.executable, *arguments],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers_ping():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start in time")
            time.sleep(0.02)
        return self

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server (``kill``: SIGKILL, as a crash); its data is gone either way."""
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=START_TIMEOUT)
        self.process = None

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.process is not None:
            self.resume()  # a frozen server cannot act on SIGTERM
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@pytest.fixture
def make_redis() -> Iterator[Callable[[], RedisServer]]:
    """Factory of started Redis servers, all stopped at the end of the test."""
    servers: list[RedisServer] = []

    def make() -> RedisServer:
        servers.append(RedisServer().start())
        return servers[-1]

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def redis_server(make_redis: Callable[[], RedisServer]) -> RedisServer:
    """One started Redis for this test."""
    return make_redis()
