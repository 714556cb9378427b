"""A tether app served over aiohttp: the ``Server`` that wires the parts, and ``serve``.

The server builds what its sessions share (``core.session.Services``: the
executor, the functions' gates, the hub, the metrics), lends the App a
``Runtime`` (loop, store backend, topics) while it serves, bridges topics
over Redis when the store is shared, and drains on shutdown: new work is
refused, running submits get ``shutdown_timeout`` seconds, then every
connection is closed with 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..app import App, Function, Runtime
from ..app.function import _Default
from ..cluster.bridge import RedisBridge
from ..cluster.channels import app_namespace
from ..core.admission import AddressCounter
from ..core.execution import Executor
from ..core.gates import Gate
from ..core.hub import Hub
from ..core.metrics import Metrics
from ..core.resume import ParkedSessions
from ..core.runner import Runner
from ..core.session import Services, Session
from ..errors import AppError
from ..protocol import Close
from ..settings import Settings
from ..store import MemoryBackend, StoreBackend, backend_from_url
from . import routes, websocket
from .frames import IncompleteBytes
from .handshakes import Handshakes
from .keepalive import sweep, sweep_period
from .outbox import Connection
from .tuning import freeze_startup_objects, raise_open_files_limit, tune_gc

__all__ = ["Server", "serve"]

log = logging.getLogger("tether.transport")


class Server:
    """A tether app served over aiohttp."""

    def __init__(self, app: App, settings: Settings | None = None) -> None:
        self.app = app
        self.settings = settings = settings or Settings.from_env()
        self.runner = Runner(settings)
        self.hub = Hub(
            settings.publish_backlog_bytes,
            max_topics=settings.max_retained_topics,
            max_bytes=settings.max_retained_bytes,
        )
        self.metrics = Metrics()
        self.counter = AddressCounter(
            settings.max_connections, settings.max_connections_per_address
        )
        self.allowed_origins = settings.allowed_origins
        # HTTP connections not (yet) upgraded, against their own caps (handshakes.py).
        self.handshakes = Handshakes(settings, self.metrics)
        # Bytes of WebSocket messages still arriving, over every connection, and the
        # time one may take (frames.py).
        self.incomplete = IncompleteBytes(
            settings.incomplete_message_bytes, settings.message_timeout
        )
        self.sessions: dict[str, Session] = {}
        # Open connections by session id (the keepalive sweep walks them).
        self.connections: dict[str, Connection] = {}
        self.parked = ParkedSessions(settings, None)
        # Handler tasks still running (shutdown waits for them).
        self.handlers: set[asyncio.Task[Any]] = set()
        self.bridge: RedisBridge | None = None
        self.runtime: Runtime | None = None
        self.services: Services  # built at startup (it needs the running loop)
        # The functions are fixed once serving starts: their manifest is built then, once.
        self.manifest: list[dict[str, Any]] = []
        self.stopping = False
        self._gates: dict[Function, Gate] = {}
        self._sweeper: asyncio.Task[None] | None = None
        # A backend this server made (from the `store` setting), closed when it stops.
        self._own_backend: StoreBackend | None = None
        self.web = web.Application()
        # The handler itself, not a method that awaits it: a wrapper would be one more
        # frame per idle connection and per message.
        routes.install(self, functools.partial(websocket.handle, self))
        self.web.on_startup.append(self._on_startup)
        self.web.on_shutdown.append(self._on_shutdown)
        self.web.on_cleanup.append(self._on_cleanup)

    # -- lifecycle -------------------------------------------------------------

    async def _on_startup(self, _: web.Application) -> None:
        loop = asyncio.get_running_loop()
        settings = self.settings
        self.manifest = self.app.manifest()
        self.hub.bind(loop)
        backend = self.app.store.backend
        if isinstance(backend, MemoryBackend):
            backend.keys.max_keys = settings.store_max_keys
        if settings.store != "memory://":
            namespace = settings.namespace or app_namespace(self.app.title)
            backend = self._own_backend = backend_from_url(
                settings.store, namespace=namespace, retained_ttl=settings.retained_ttl
            )
            self.bridge = RedisBridge(
                settings.store, namespace, self.hub, retained_ttl=settings.retained_ttl
            )
            reachable = await _reachable(backend)
            if not reachable:
                # Said at once, not after the bridge's wait: nothing is there to wait for.
                log.warning(
                    "the store at %s is unreachable; serving anyway and retrying in the "
                    "background. Until it answers, /readyz answers 503 "
                    '{"status": "unavailable", "store": "unavailable", "topics": "reconnecting"} '
                    "and submits that use app.store get store_unavailable",
                    _redacted(settings.store),
                )
            await self.bridge.start(wait=5.0 if reachable else 0.0)
        self.runtime = Runtime(loop, backend, self.hub.publish, self.hub.forget)
        self.app.attach(self.runtime)
        self.parked = ParkedSessions(settings, backend.sessions)
        self.services = Services(
            self.app,
            settings,
            Executor(self.runner, settings.debug, settings.max_state_bytes),
            self.gate,
            self.hub,
            self.metrics,
        )
        period = sweep_period(settings)
        if period > 0:
            self._sweeper = loop.create_task(
                sweep(period, self.connections, self.sessions, settings, self.metrics)
            )

    def gate(self, function: Function) -> Gate:
        """The concurrency gate of ``function`` (shared by every session of this server)."""
        gate = self._gates.get(function)
        if gate is None:
            limit = function.concurrency_limit
            settings = self.settings
            gate = self._gates[function] = Gate(
                settings.thread_pool_size if isinstance(limit, _Default) else limit,
                settings.max_queue if function.max_queue is None else function.max_queue,
                settings.queue_update_interval,
                settings.queue_notice_delay,
                settings.max_running_per_session,
            )
        return gate

    def gauges(self) -> dict[str, Any]:
        """What /metrics reports besides the counters."""
        return {
            "sessions": len(self.sessions),
            "parked": len(self.parked),
            "connections": len(self.connections),
            "topics": self.hub.topic_count(),
            "functions": {f.name: (g.running, len(g)) for f, g in self._gates.items()},
        }

    async def _on_shutdown(self, _: web.Application) -> None:
        await self.drain()

    async def drain(self) -> None:
        """Drain: refuse new work, let running submits finish, then close with 1001.

        ``serve`` runs it before aiohttp's own shutdown, whose first step makes every
        connection discard what it receives: run after it, a submit read in the
        meantime would get no answer. Run first, every connection is read until its
        1001 goes out, and every submit read gets its result or `shutting_down`.
        """
        if self.stopping:
            return
        self.stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        sessions = list(self.sessions.values())
        if sessions:
            await asyncio.gather(*(s.drain(self.settings.shutdown_timeout) for s in sessions))
        await asyncio.gather(
            *(self._close_session(sid, conn) for sid, conn in list(self.connections.items()))
        )
        await self.parked.close(self.settings.close_timeout)
        if self.handlers:
            await asyncio.wait(list(self.handlers), timeout=self.settings.shutdown_timeout)

    async def _close_session(self, session_id: str, conn: Connection) -> None:
        """End a session, then close its connection with 1001. In that order: ending it
        cancels what is still running, and those `shutting_down` errors must be sent
        before the close."""
        session = self.sessions.get(session_id)
        if session is not None:
            await session.close()
        await conn.flush_and_close(Close.GOING_AWAY, "server shutting down")

    async def _on_cleanup(self, _: web.Application) -> None:
        if self.bridge is not None:
            await self.bridge.close()
        self.runner.close()
        if self.runtime is not None:
            self.app.detach(self.runtime)
        self.hub.bind(None)
        if self._own_backend is not None:
            await self._own_backend.close()


_PING_TIMEOUT = 3.0  # seconds a shared store has to answer the startup ping


async def _reachable(backend: StoreBackend) -> bool:
    """Whether a shared store answers a ping within ``_PING_TIMEOUT`` seconds."""
    try:
        async with asyncio.timeout(_PING_TIMEOUT):
            return await backend.ping()
    except TimeoutError:
        return False


def _redacted(url: str) -> str:
    """A store URL fit for a log: without its password."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{hostpart}"


async def serve(
    app: App,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: Settings | None = None,
    *,
    stop: asyncio.Event | None = None,
    announce: bool = False,
    on_ready: Callable[[Server, int], None] | None = None,
    reuse_port: bool = False,
) -> None:
    """Serve ``app`` until ``stop`` is set, SIGINT or SIGTERM; then shut down gracefully."""
    if app.runtime is not None:
        raise AppError(
            f"the app {app.title!r} is already being served by another server in this "
            "process; stop that one first, or build one App per server"
        )
    server = Server(app, settings)
    settings = server.settings
    tune_gc(settings.gc_young_threshold)
    raise_open_files_limit(settings.max_connections)
    runner = web.AppRunner(
        server.web,
        handle_signals=False,
        access_log=None,
        keepalive_timeout=server.settings.handshake_timeout,
        shutdown_timeout=server.settings.shutdown_timeout + 5,
    )
    await runner.setup()
    assert runner.server is not None
    server.handshakes.install(runner.server)
    site = web.TCPSite(
        runner,
        host,
        port,
        reuse_address=True,
        reuse_port=reuse_port or None,
        backlog=settings.listen_backlog,
    )
    await site.start()
    if settings.gc_freeze:
        freeze_startup_objects()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    bound = _bound_port(site) or port
    if announce:
        print(
            f"tether serving on http://{_url_host(host)}:{bound}/ (pid {os.getpid()})", flush=True
        )
    if on_ready is not None:
        on_ready(server, bound)
    try:
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        if announce:
            running = sum(len(s.tasks) for s in server.sessions.values())
            print(
                f"tether stopping: {len(server.sessions)} session(s) open, {running} submit(s) "
                f"running (given up to {settings.shutdown_timeout:g} s to finish)",
                flush=True,
            )
        # Stop listening, drain while every connection is still read, then let
        # aiohttp shut down (its pre-shutdown stops reading: nothing is left to read).
        await site.stop()
        await server.drain()
        await runner.cleanup()
        if announce:
            print(f"tether stopped (pid {os.getpid()})", flush=True)


def _bound_port(site: web.TCPSite) -> int | None:
    server = site._server
    sockets = getattr(server, "sockets", None)
    if sockets:
        return int(sockets[0].getsockname()[1])
    return None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
