"""Serving an app with ``python -m tether serve`` in a subprocess, as an operator does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port

__all__ = ["Server", "tether_servers"]


class Server:
    """``python -m tether serve`` in a subprocess; its output goes to ``server.log``
    in ``cwd`` (a file, not a pipe that nobody drains and a chatty server could fill)."""

    def __init__(self, cwd: Path, spec: str, *args: str) -> None:
        self.port = free_port()
        self.log = cwd / "server.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tether", "serve", spec, "--port", str(self.port), *args],
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def wait_ready(self, limit: float = 30) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if "serving on" in self.output:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"the server did not start:\n{self.output}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)


@pytest.fixture(name="servers")
def tether_servers() -> Iterator[list[Server]]:
    """Subprocess servers a test starts (append them); all are killed afterwards."""
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()
