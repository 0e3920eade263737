"""The service as separate processes: started, stopped, and killed like in production."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from session_service.config import Settings

CLI = [sys.executable, "-m", "session_service"]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment minus every setting the service reads, plus `extra`."""
    names = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key not in names}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    base: str
    process: subprocess.Popen[str]
    output: str = ""

    def kill(self) -> None:
        """kill -9: no shutdown, no cleanup, like a crashed machine."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.output = self.process.communicate(timeout=15)[0]

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
            self.output = self.process.communicate(timeout=15)[0]
        return self.output


@contextmanager
def serving(cwd: Path, *options: str, **env: str) -> Iterator[Server]:
    """Run `session-service serve [options]` in `cwd` until the block ends."""
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), *options],
        cwd=cwd,
        env=clean_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = Server(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + 30
        while not _ready(server.base):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"serve did not become ready: {server.stop()}")
            time.sleep(0.1)
        yield server
    finally:
        server.stop()


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
