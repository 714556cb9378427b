"""Shared fixtures: real tether servers and real redis-server processes on free loopback ports."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvloop

from tests.redis_server import RedisServer, redis_server_binary
from tether import App, Settings
from tether.server import Server, serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    """A server running in its own thread and event loop, as in production."""

    server: Server
    port: int
    loop: asyncio.AbstractEventLoop
    _stop: asyncio.Event
    _thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop (to read server internals safely)."""
        future: asyncio.Future[Any] = asyncio.run_coroutine_threadsafe(_call(fn), self.loop)
        return future.result(timeout=10)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=30)


async def _call(fn: Callable[[], Any]) -> Any:
    return fn()


def start_server(app: App, **settings: Any) -> RunningServer:
    ready = threading.Event()
    box: dict[str, Any] = {}

    def on_ready(server: Server, port: int) -> None:
        box["server"], box["port"] = server, port
        ready.set()

    async def main() -> None:
        box["loop"] = asyncio.get_running_loop()
        box["stop"] = stop = asyncio.Event()
        try:
            await serve(app, "127.0.0.1", 0, Settings(**settings), stop=stop, on_ready=on_ready)
        except BaseException as exc:
            box["error"] = exc
            ready.set()
            raise

    def run() -> None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(10) or "error" in box:
        raise RuntimeError(f"server did not start: {box.get('error')!r}")
    return RunningServer(box["server"], box["port"], box["loop"], box["stop"], thread)


@pytest.fixture
def serve_app() -> Iterator[Callable[..., RunningServer]]:
    """``serve_app(app, **settings)`` starts a real server; all are stopped after the test."""
    running: list[RunningServer] = []

    def start(app: App, **settings: Any) -> RunningServer:
        server = start_server(app, **settings)
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()


NO_REDIS_SERVER = (
    "SKIPPED REDIS TESTS: no redis-server binary on PATH "
    "(install it with `make system-deps`; CI always has one)"
)


def require_redis_server() -> None:
    """Skip (loudly) where no ``redis-server`` binary exists; under CI that is a failure."""
    if redis_server_binary() is None:
        if os.environ.get("CI"):
            pytest.fail(NO_REDIS_SERVER.replace("SKIPPED", "CANNOT RUN"), pytrace=False)
        pytest.skip(NO_REDIS_SERVER)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if redis_server_binary() is None:
        terminalreporter.write_sep("!", NO_REDIS_SERVER, red=True, bold=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the whole run (use ``redis_namespace`` to stay apart)."""
    require_redis_server()
    with RedisServer() as server:
        yield server


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A redis-server for this test alone, free to be killed, paused and restarted."""
    require_redis_server()
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_namespace() -> str:
    """A store namespace no other test uses."""
    return f"test{uuid.uuid4().hex[:12]}"
