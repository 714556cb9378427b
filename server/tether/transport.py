"""The aiohttp side: HTTP routes, the WebSocket read loop, and bounded send queues.

This is the only module of the server that imports aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections import deque
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from .app import App
from .protocol import Close, Code, encode_error, encode_welcome
from .runner import Runner
from .session import Session
from .settings import Settings

__all__ = ["Connection", "Server", "serve", "static_dir"]

log = logging.getLogger("tether.transport")

_BINARY_REFUSED = encode_error(
    None, Code.BAD_MESSAGE, "binary frames are not part of the protocol; send JSON text frames"
)


def static_dir() -> Path:
    """Where the browser client lives: next to the source tree, or inside the wheel."""
    source = Path(__file__).resolve().parents[2] / "client_static"
    if (source / "index.html").is_file():
        return source
    return Path(str(resources.files("tether") / "client_static"))


class Connection:
    """One WebSocket's outgoing side: a bounded queue drained by a writer task.

    ``send`` never blocks and never grows memory without bound: when the
    queue is over its message or byte limit the peer is not keeping up, and
    the connection is closed with 4008 (slow consumer).
    """

    def __init__(self, ws: web.WebSocketResponse, settings: Settings) -> None:
        self.ws = ws
        self._max_messages = settings.send_queue_messages
        self._max_bytes = settings.send_queue_bytes
        self._queue: deque[bytes] = deque()
        self._bytes = 0
        self._wake = asyncio.Event()
        self.closed = False
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    def send(self, frame: bytes) -> None:
        if self.closed:
            return
        if len(self._queue) >= self._max_messages or self._bytes + len(frame) > self._max_bytes:
            log.warning("closing a slow consumer: its send queue is full")
            self.abort(Close.SLOW_CONSUMER, "send queue full")
            return
        self._queue.append(frame)
        self._bytes += len(frame)
        self._wake.set()

    async def _write_loop(self) -> None:
        ws = self.ws
        queue = self._queue
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while queue:
                    frame = queue.popleft()
                    if not frame:
                        return
                    self._bytes -= len(frame)
                    await ws.send_frame(frame, WSMsgType.TEXT)
        except (ConnectionError, RuntimeError):
            # The peer went away; the read loop sees it and ends the session.
            self.closed = True

    def abort(self, code: int, reason: str) -> None:
        """Close now, dropping whatever is queued."""
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        self._bytes = 0
        self._writer.cancel()
        asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=reason.encode())

    async def flush_and_close(self, code: int, reason: str, grace: float = 5.0) -> None:
        """Send what is queued (for up to ``grace`` seconds), then close with ``code``."""
        if not self.closed:
            self.closed = True
            self._queue.append(b"")  # sentinel: the writer stops when it reaches it
            self._wake.set()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._writer), grace)
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        await self._close(code, reason)


class Server:
    """A tether app served over aiohttp."""

    def __init__(self, app: App, settings: Settings | None = None) -> None:
        self.app = app
        self.settings = settings or Settings.from_env()
        self.runner = Runner(self.settings)
        self.sessions: dict[str, Session] = {}
        self._connections: dict[str, Connection] = {}
        self._handlers: set[asyncio.Task[Any]] = set()
        self.stopping = False
        self.web = web.Application()
        self.web.router.add_get("/ws", self._websocket)
        self.web.router.add_get("/healthz", self._healthz)
        self.web.router.add_get("/", self._index)
        self.web.router.add_static("/static/", static_dir(), show_index=False)
        self.web.on_startup.append(self._on_startup)
        self.web.on_shutdown.append(self._on_shutdown)
        self.web.on_cleanup.append(self._on_cleanup)

    # -- lifecycle -----------------------------------------------------------

    async def _on_startup(self, _: web.Application) -> None:
        self.app.store.bind(asyncio.get_running_loop())

    async def _on_shutdown(self, _: web.Application) -> None:
        """Drain: refuse new work, let running submits finish, then close with 1001."""
        self.stopping = True
        sessions = list(self.sessions.values())
        if sessions:
            await asyncio.gather(*(s.drain(self.settings.shutdown_timeout) for s in sessions))
        for session_id, conn in list(self._connections.items()):
            await conn.flush_and_close(Close.GOING_AWAY, "server shutting down")
            session = self.sessions.get(session_id)
            if session is not None:
                await session.close()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=self.settings.shutdown_timeout)

    async def _on_cleanup(self, _: web.Application) -> None:
        self.runner.close()
        self.app.store.bind(None)
        await self.app.store.backend.close()

    # -- routes ----------------------------------------------------------------

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "sessions": len(self.sessions)})

    async def _index(self, _: web.Request) -> web.StreamResponse:
        return web.FileResponse(static_dir() / "index.html")

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if self.stopping:
            raise web.HTTPServiceUnavailable(text="server is shutting down")
        ws = web.WebSocketResponse(max_msg_size=self.settings.max_message_size, compress=False)
        await ws.prepare(request)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        conn = Connection(ws, self.settings)
        session = Session(self.app, self.runner, self.settings, conn.send, client=request.remote)
        self.sessions[session.id] = session
        self._connections[session.id] = conn
        try:
            conn.send(encode_welcome(session.id, self.app.manifest()))
            receive = session.receive
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    receive(msg.data)
                elif msg.type is WSMsgType.BINARY:
                    conn.send(_BINARY_REFUSED)
                elif msg.type is WSMsgType.ERROR:
                    break
        finally:
            self.sessions.pop(session.id, None)
            self._connections.pop(session.id, None)
            conn.closed = True
            conn._writer.cancel()  # the peer is gone: nothing more can be written
            await session.close()
            self._handlers.discard(task)
        return ws


async def serve(
    app: App,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: Settings | None = None,
    *,
    stop: asyncio.Event | None = None,
    announce: bool = False,
    on_ready: Callable[[Server, int], None] | None = None,
) -> None:
    """Serve ``app`` until ``stop`` is set, SIGINT or SIGTERM; then shut down gracefully."""
    server = Server(app, settings)
    runner = web.AppRunner(
        server.web,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=server.settings.shutdown_timeout + 5,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    bound = _bound_port(site) or port
    if announce:
        print(f"tether serving on http://{_url_host(host)}:{bound}/", flush=True)
    if on_ready is not None:
        on_ready(server, bound)
    try:
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await runner.cleanup()


def _bound_port(site: web.TCPSite) -> int | None:
    server = site._server
    sockets = getattr(server, "sockets", None)
    if sockets:
        return int(sockets[0].getsockname()[1])
    return None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
