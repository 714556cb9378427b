"""The aiohttp side: HTTP routes, the WebSocket read loop, and bounded send queues.

This is the only module of the server that imports aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import re
import signal
import struct
from collections import deque
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from ..app import App, Function, Runtime
from ..app.function import _Default
from ..cluster.bridge import RedisBridge
from ..core.admission import AddressCounter, origin_allowed
from ..core.gates import Gate
from ..core.hub import Hub
from ..core.metrics import Metrics, exposition
from ..core.metrics import available as metrics_available
from ..core.runner import Runner
from ..core.session import Session
from ..errors import Refused
from ..protocol import Close, Code, encode_error, encode_welcome
from ..settings import Settings
from ..store import StoreBackend, backend_from_url
from .tuning import freeze_startup_objects, raise_open_files_limit, tune_gc

__all__ = ["Connection", "Server", "serve", "static_dir"]

log = logging.getLogger("tether.transport")

_NO_QUERY: dict[str, str] = {}
_BINARY_REFUSED = encode_error(
    None, Code.BAD_MESSAGE, "binary frames are not part of the protocol; send JSON text frames"
)


# Above this many bytes waiting in the socket's buffer, frames queue instead of
# being written at once (the writer then waits for the socket to drain).
_DIRECT_LIMIT = 64 * 1024
_COPY_LIMIT = 16 * 1024
_PING = b"\x89\x00"  # an unmasked ping frame with no payload
_LEN2 = struct.Struct("!BBH").pack
_LEN3 = struct.Struct("!BBQ").pack


def _frame_header(length: int) -> bytes:
    """The header of an unmasked, final text frame of ``length`` bytes."""
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return _LEN2(0x81, 126, length)
    return _LEN3(0x81, 127, length)


def static_dir() -> Path:
    """Where the browser client lives: next to the source tree, or inside the wheel."""
    source = Path(__file__).resolve().parents[3] / "client_static"
    if (source / "index.html").is_file():
        return source
    return Path(str(resources.files("tether") / "client_static"))


class Connection:
    """One WebSocket's outgoing side: direct writes, and a bounded queue when the
    peer is behind.

    While the socket keeps up, ``send`` writes the frame into the transport at
    once (RFC 6455 framing: a server's frames are unmasked), which costs no
    task wake-up per frame and no task per idle connection. When the
    transport's buffer is over ``_DIRECT_LIMIT`` bytes (or compression is on),
    frames queue and a writer task, started then and gone once the queue is
    empty, sends them through aiohttp, which waits for the socket to drain.

    ``send`` never blocks and never grows memory without bound: when the
    queue is over its message or byte limit the peer is not keeping up, and
    the connection is closed with 4008 (slow consumer).
    """

    __slots__ = (
        "_bytes",
        "_close_timeout",
        "_closer",
        "_direct",
        "_max_bytes",
        "_max_messages",
        "_queue",
        "_transport",
        "_writer",
        "closed",
        "closed_by_server",
        "dead",
        "heard_at",
        "metrics",
        "ping_at",
        "requested_close",
        "ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        settings: Settings,
        transport: asyncio.Transport | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.ws = ws
        self._transport = transport
        # Compressed frames carry compressor state: they must go through aiohttp.
        self._direct = transport is not None and not settings.compression
        self._close_timeout = settings.close_timeout
        self._max_messages = settings.send_queue_messages
        self._max_bytes = settings.send_queue_bytes
        self._queue: deque[bytes] | None = None  # made when first needed (it is 600 bytes)
        self._bytes = 0
        self._closer: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self.requested_close: tuple[int, str] | None = None
        self.closed_by_server = False
        self.closed = False
        # Keepalive (see Server._sweep): when a pong last came, when the
        # unanswered ping went out (0: none), and whether the peer was given up.
        self.metrics = metrics
        self.heard_at = asyncio.get_running_loop().time()
        self.ping_at = 0.0
        self.dead = False

    def send(self, frame: bytes) -> None:
        if self.closed:
            return
        transport = self._transport
        if (
            self._direct
            and not self._queue
            and transport is not None
            and transport.get_write_buffer_size() <= _DIRECT_LIMIT
        ):
            if self.ws.closed or transport.is_closing():
                self.closed = True  # the read loop sees the end and ends the session
                return
            if len(frame) < _COPY_LIMIT:
                transport.write(_frame_header(len(frame)) + frame)
            else:  # not worth a copy of the frame
                transport.writelines((_frame_header(len(frame)), frame))
            return
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        if len(queue) >= self._max_messages or self._bytes + len(frame) > self._max_bytes:
            log.warning("closing a slow consumer: its send queue is full")
            if self.metrics is not None:
                self.metrics.closed["slow_consumer"] += 1
            self.abort(Close.SLOW_CONSUMER, "send queue full")
            return
        queue.append(frame)
        self._bytes += len(frame)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def _write_loop(self) -> None:
        ws = self.ws
        queue = self._queue
        assert queue is not None
        try:
            while queue:
                frame = queue.popleft()
                if not frame:
                    return  # the close sentinel
                self._bytes -= len(frame)
                await ws.send_frame(frame, WSMsgType.TEXT)
                # Do not keep the last frame alive while waiting.
                del frame
        except (ConnectionError, RuntimeError):
            # The peer went away; the read loop sees it and ends the session.
            self.closed = True
        finally:
            self._writer = None
            if not queue:
                self._queue = None  # back to direct writes; no idle deque

    def ping(self, now: float) -> None:
        """Send a WebSocket ping (a control frame: it may go ahead of queued frames)."""
        transport = self._transport
        if transport is None or transport.is_closing() or self.ws.closed:
            return
        self.ping_at = now
        transport.write(_PING)

    def give_up(self) -> None:
        """The peer did not answer a ping in time: drop the TCP connection (the read
        loop ends, and the session is parked for a resume)."""
        self.dead = True
        if self._transport is not None:
            self._transport.abort()

    def request_close(self, code: int, reason: str) -> None:
        """Ask the connection's handler to close after the current message (from the
        read path only: the handler checks after every message it hands on)."""
        if self.requested_close is None:
            self.requested_close = (code, reason)

    def stop_writer(self) -> None:
        """The socket is gone: stop the writer task and drop what is queued."""
        if self._writer is not None:
            self._writer.cancel()
        self._queue = None
        self._bytes = 0

    def abort(self, code: int, reason: str) -> None:
        """Close now, dropping whatever is queued."""
        if self.closed or self._closer is not None:
            return
        self.closed = True
        self.stop_writer()
        self._closer = asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        self.closed_by_server = True
        await self._close_handshake(code, reason)

    async def _close_handshake(self, code: int, reason: str) -> None:
        """Close handshake, bounded: a peer that does not read cannot hold us up.

        The close frame goes into the transport without waiting for the peer
        to drain it (``drain=False``), which also ends the handler's read loop
        at once; then the peer has ``close_timeout`` seconds to answer before
        the TCP connection is dropped.
        """
        answered = False
        try:
            await asyncio.wait_for(
                self.ws.close(code=code, message=reason.encode(), drain=False),
                self._close_timeout + 1,
            )
            answered = self.ws.close_code == code or self.ws.close_code == 1000
        except Exception as exc:
            log.debug("close handshake failed: %r", exc)
        if not answered and self._transport is not None:
            log.debug("dropping a connection that did not answer close (%s)", self.ws.close_code)
            self._transport.abort()

    async def flush_and_close(self, code: int, reason: str, grace: float = 5.0) -> None:
        """Send what is queued (for up to ``grace`` seconds), then close with ``code``.

        Runs as the connection's closer task, which the handler waits for, so the
        close handshake finishes before aiohttp tears the connection down.
        """
        if self._closer is None:
            self._closer = asyncio.get_running_loop().create_task(
                self._flush_and_close(code, reason, grace)
            )
        await asyncio.shield(self._closer)

    async def wait_closed(self, limit: float) -> None:
        """Wait (bounded) for a close handshake in progress."""
        if self._closer is not None:
            await asyncio.wait({self._closer}, timeout=limit)

    async def _flush_and_close(self, code: int, reason: str, grace: float) -> None:
        writer = self._writer
        if not self.closed and writer is not None:
            # Frames are queued (the peer is behind): let the writer send them.
            assert self._queue is not None
            self._queue.append(b"")  # sentinel: the writer stops when it reaches it
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(writer), grace)
        self.closed = True
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        await self._close(code, reason)


class Server:
    """A tether app served over aiohttp."""

    def __init__(self, app: App, settings: Settings | None = None) -> None:
        self.app = app
        self.settings = settings or Settings.from_env()
        self.runner = Runner(self.settings)
        self.hub = Hub(self.settings.publish_backlog_bytes)
        self._gates: dict[Function, Gate] = {}
        self.sessions: dict[str, Session] = {}
        self.counter = AddressCounter(
            self.settings.max_connections, self.settings.max_connections_per_address
        )
        self._allowed_origins = self.settings.allowed_origins
        self._sweeper: asyncio.Task[None] | None = None
        self.parked: dict[str, tuple[Session, asyncio.TimerHandle]] = {}
        self.bridge: RedisBridge | None = None
        self.runtime: Runtime | None = None
        # A backend this server made (from the `store` setting), closed when it stops.
        self._own_backend: StoreBackend | None = None
        self._manifest: list[dict[str, Any]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._connections: dict[str, Connection] = {}
        self._handlers: set[asyncio.Task[Any]] = set()
        self._gate_of = self.gate  # one bound method for every session
        self.metrics = Metrics()
        self.stopping = False
        self.web = web.Application()
        self.web.router.add_get("/ws", self._websocket)
        self.web.router.add_get("/healthz", self._healthz)
        self.web.router.add_get("/readyz", self._readyz)
        if self.settings.metrics:
            self.web.router.add_get("/metrics", self._metrics)
        self.web.router.add_get("/", self._index)
        self.web.router.add_static("/static/", static_dir(), show_index=False)
        self.web.on_startup.append(self._on_startup)
        self.web.on_shutdown.append(self._on_shutdown)
        self.web.on_cleanup.append(self._on_cleanup)

    # -- lifecycle -----------------------------------------------------------

    async def _on_startup(self, _: web.Application) -> None:
        loop = asyncio.get_running_loop()
        # The functions are fixed once serving starts: build their manifest once.
        self._manifest = self.app.manifest()
        self.hub.bind(loop)
        backend = self.app.store.backend
        if self.settings.store != "memory://":
            namespace = self.settings.namespace or app_namespace(self.app.title)
            backend = self._own_backend = backend_from_url(self.settings.store, namespace=namespace)
            self.bridge = RedisBridge(self.settings.store, namespace, self.hub)
            await self.bridge.start()
        self.runtime = Runtime(loop, backend, self.hub.publish)
        self.app.attach(self.runtime)
        period = self.sweep_period()
        if period > 0:
            self._sweeper = loop.create_task(self._sweep(period))

    def sweep_period(self) -> float:
        """How often ``_sweep`` looks at every connection (0: no sweeps needed)."""
        s = self.settings
        periods = []
        if s.idle_timeout > 0:
            periods.append(min(s.idle_timeout / 4, 5.0))
        if s.ping_interval > 0:
            periods.append(min(s.ping_interval, s.pong_timeout) / 4)
        return min(periods, default=0.0)

    async def _sweep(self, period: float) -> None:
        """Every ``period`` seconds, one pass over every connection (not a timer per
        connection): close sessions that sent nothing for ``idle_timeout`` seconds
        (4001); ping connections silent for ``ping_interval`` seconds, and drop
        those whose ping went unanswered for ``pong_timeout`` seconds. Any message,
        not only a pong, counts as an answer."""
        s = self.settings
        idle_timeout, interval, pong_timeout = s.idle_timeout, s.ping_interval, s.pong_timeout
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            for session_id, conn in list(self._connections.items()):
                session = self.sessions.get(session_id)
                if session is None or conn.closed:
                    continue
                if idle_timeout > 0 and session.last_active < now - idle_timeout:
                    self.metrics.closed["idle"] += 1
                    conn.abort(Close.IDLE, "idle timeout")
                    continue
                if interval <= 0:
                    continue
                heard = max(conn.heard_at, session.last_active)
                if conn.ping_at:
                    if heard >= conn.ping_at:
                        conn.ping_at = 0.0  # answered
                    elif now - conn.ping_at >= pong_timeout:
                        log.info("dropping session %s: no pong in %g s", session_id, pong_timeout)
                        self.metrics.closed["no_pong"] += 1
                        conn.give_up()
                        continue
                if not conn.ping_at and now - heard >= interval:
                    conn.ping(now)

    def gate(self, function: Function) -> Gate:
        """The concurrency gate of ``function`` (shared by every session of this server)."""
        gate = self._gates.get(function)
        if gate is None:
            limit = function.concurrency_limit
            gate = self._gates[function] = Gate(
                self.settings.thread_pool_size if isinstance(limit, _Default) else limit,
                self.settings.max_queue if function.max_queue is None else function.max_queue,
                self.settings.queue_update_interval,
                self.settings.queue_notice_delay,
            )
        return gate

    async def _on_shutdown(self, _: web.Application) -> None:
        """Drain: refuse new work, let running submits finish, then close with 1001."""
        self.stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        sessions = list(self.sessions.values())
        if sessions:
            await asyncio.gather(*(s.drain(self.settings.shutdown_timeout) for s in sessions))
        await asyncio.gather(
            *(self._close_session(sid, conn) for sid, conn in list(self._connections.items()))
        )
        for token in list(self.parked):
            session, timer = self.parked.pop(token)
            timer.cancel()
            await session.close()
        if self._background:
            await asyncio.wait(list(self._background), timeout=self.settings.close_timeout)
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=self.settings.shutdown_timeout)

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

    # -- resume ----------------------------------------------------------------

    def _should_park(self, ws: web.WebSocketResponse, conn: Connection) -> bool:
        """Park a session whose connection dropped (no close frame from the client,
        a missed pong); a client that closed on purpose, or that we closed for a
        reason, ends its session now."""
        if self.settings.resume_grace <= 0 or self.stopping:
            return False
        if conn.requested_close is not None or conn.closed_by_server:
            return False
        return conn.dead or ws.close_code not in (1000, 1001)

    def _park(self, session: Session) -> None:
        session.detach()
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.settings.resume_grace, self._expire, session.resume_token)
        self.parked[session.resume_token] = (session, timer)
        if session.on_commit is not None:
            self._save_soon(session)

    def _take_parked(self, token: str) -> Session | None:
        entry = self.parked.pop(token, None)
        if entry is None:
            return None
        session, timer = entry
        timer.cancel()
        if session.on_commit is not None:
            self._forget(token)
        return session

    def _expire(self, token: str) -> None:
        entry = self.parked.pop(token, None)
        if entry is None:
            return
        session, _ = entry
        self._spawn(self._end_parked(session))

    async def _end_parked(self, session: Session) -> None:
        if session.on_commit is not None:
            # Resumed on another node meanwhile? Then its record is gone: no hook here.
            claimed = await self._claim(session.resume_token)
            if claimed is None:
                await session.close(run_hooks=False)
                return
        await session.close()

    def _save_soon(self, session: Session) -> None:
        self._spawn(self._save(session))

    async def _save(self, session: Session) -> None:
        try:
            await self.app.store.backend.session_save(
                session.resume_token, session.to_record(), self.settings.resume_grace
            )
        except Exception as exc:
            log.warning("could not save session %s for resume: %s", session.id, exc)

    async def _claim(self, token: str) -> dict[str, Any] | None:
        try:
            return await self.app.store.backend.session_claim(token)
        except Exception as exc:
            log.warning("could not look up a session to resume: %s", exc)
            return None

    def _forget(self, token: str) -> None:
        self._spawn(self._delete(token))

    async def _delete(self, token: str) -> None:
        with contextlib.suppress(Exception):
            await self.app.store.backend.session_delete(token)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- routes ----------------------------------------------------------------

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "sessions": len(self.sessions),
                "parked": len(self.parked),
                "pid": os.getpid(),
            }
        )

    async def _readyz(self, _: web.Request) -> web.Response:
        """Ready to serve: 503 while a shared store or its topic link is down."""
        checks: dict[str, str] = {}
        backend = self.app.store.backend
        ping = getattr(backend, "ping", None)
        if ping is not None:
            checks["store"] = "ok" if await ping() else "unavailable"
        if self.bridge is not None:
            checks["topics"] = "ok" if self.bridge.healthy else "reconnecting"
        ready = not self.stopping and all(v == "ok" for v in checks.values())
        body = {"status": "ready" if ready else "unavailable", **checks}
        if self.stopping:
            body["status"] = "stopping"
        return web.json_response(body, status=200 if ready else 503)

    async def _metrics(self, _: web.Request) -> web.Response:
        """Prometheus text exposition (501 without prometheus-client)."""
        if not metrics_available():
            return web.Response(
                status=501,
                text="metrics need prometheus-client: pip install 'tether[metrics]'\n",
            )
        body, content_type = exposition(self.metrics, self._gauges)
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    def _gauges(self) -> dict[str, Any]:
        return {
            "sessions": len(self.sessions),
            "parked": len(self.parked),
            "connections": len(self._connections),
            "topics": self.hub.topic_count(),
            "functions": {f.name: (g.running, len(g)) for f, g in self._gates.items()},
        }

    async def _index(self, _: web.Request) -> web.StreamResponse:
        return web.FileResponse(static_dir() / "index.html")

    async def _admit(self, request: web.Request) -> Any:
        """Everything checked before the upgrade; returns the identity or raises an
        HTTP error (403 foreign origin, 401/403 authentication, 503 over a cap)."""
        settings = self.settings
        if self.stopping:
            raise web.HTTPServiceUnavailable(text="server is shutting down")
        origin = request.headers.get("Origin")
        if (
            origin is not None
            and settings.check_origin
            and not origin_allowed(origin, request.host, self._allowed_origins)
        ):
            log.info("refused a handshake from origin %r", origin[:200])
            raise web.HTTPForbidden(text="cross-origin WebSocket refused (see allow_origin)")
        refusal = self.counter.refusal(request.remote or "")
        if refusal is None and len(self.sessions) + len(self.parked) >= settings.max_sessions:
            refusal = f"the server is at its session limit ({settings.max_sessions})"
        if refusal is not None:
            raise web.HTTPServiceUnavailable(text=refusal, headers={"Retry-After": "5"})
        hook = self.app.authenticator
        if hook is None:
            return None
        try:
            async with asyncio.timeout(settings.handshake_timeout):
                if inspect.iscoroutinefunction(hook):
                    identity = await hook(request)
                else:
                    loop = asyncio.get_running_loop()
                    identity = await loop.run_in_executor(self.runner.pool, hook, request)
        except Refused as exc:
            raise _refusal(exc.status, exc.reason) from None
        except TimeoutError:
            raise web.HTTPServiceUnavailable(text="authentication timed out") from None
        except Exception:
            log.exception("the authenticate hook failed")
            raise web.HTTPInternalServerError(text="authentication failed") from None
        if identity is None:
            raise _refusal(401, "authentication required")
        return identity

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        identity = await self._admit(request)
        settings = self.settings
        address = request.remote or ""
        ws = web.WebSocketResponse(
            max_msg_size=settings.max_message_size,
            compress=settings.compression,
            timeout=settings.close_timeout,
            # Pings and pongs are ours (Server._sweep): one sweep for every
            # connection instead of a timer per connection reset per message.
            autoping=False,
        )
        self.counter.add(address)
        try:
            await ws.prepare(request)
        except ConnectionError as exc:
            # The client went away during the handshake: nothing to serve, and
            # nothing worth a traceback.
            self.counter.remove(address)
            log.debug("a client left during the handshake: %r", exc)
            return ws
        except BaseException:
            self.counter.remove(address)
            raise
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        conn = Connection(ws, settings, request.transport, self.metrics)
        # (request.query is a parsed copy kept as long as the request: only if needed.)
        query = request.query if "?" in request.raw_path else _NO_QUERY
        deltas = query.get("deltas", "") in ("1", "true")
        token = query.get("resume", "")
        del query
        session = self._take_parked(token) if token else None
        record = None
        resumed = session is not None
        if session is not None:
            session.attach(conn.send, deltas=deltas, close=conn.request_close)
        else:
            if token and self.app.store.backend.shared:
                record = await self._claim(token)
            session = Session(
                self.app,
                self.runner,
                settings,
                conn.send,
                gate=self._gate_of,
                hub=self.hub,
                deltas=deltas,
                client=request.remote,
                identity=identity,
                close=conn.request_close,
                id=record.get("id") if record else None,
                metrics=self.metrics,
            )
            resumed = record is not None
        if settings.resume_grace > 0 and self.app.store.backend.shared:
            session.on_commit = self._save_soon
        self.sessions[session.id] = session
        self._connections[session.id] = conn
        try:
            extra: dict[str, Any] = {"topics": self.app.topics, "deltas": deltas}
            if settings.resume_grace > 0:
                extra["resume"] = session.resume_token
                extra["resumed"] = resumed
            conn.send(encode_welcome(session.id, self._manifest, **extra))
            # What lives in this frame lives as long as the connection.
            del extra, token
            if record is not None:
                session.load_record(record)
                self._save_soon(session)
                record = None
            loop = asyncio.get_running_loop()
            while True:
                # (Not ``async for``: its __anext__ is one more frame per idle connection.)
                msg = await ws.receive()
                kind = msg.type
                if kind is WSMsgType.TEXT:
                    session.receive(msg.data)
                elif kind is WSMsgType.PONG:
                    conn.heard_at = loop.time()
                elif kind is WSMsgType.PING:
                    await ws.pong(msg.data)
                elif kind is WSMsgType.BINARY:
                    conn.send(_BINARY_REFUSED)
                else:  # CLOSE, CLOSING, CLOSED, ERROR (pings and pongs are aiohttp's)
                    break
                del msg
                if conn.requested_close is not None:
                    break
            if conn.requested_close is not None:
                # Closing from this task (no receive pending) lets aiohttp wait for
                # the client's close reply, reading what it still sends, instead of
                # closing the socket under unread data (a TCP reset loses the frame).
                await conn.flush_and_close(*conn.requested_close, settings.close_timeout)
        finally:
            self.sessions.pop(session.id, None)
            self._connections.pop(session.id, None)
            self.counter.remove(address)
            conn.closed = True
            conn.stop_writer()
            if self._should_park(ws, conn):
                self._park(session)
            else:
                await session.close()
                if session.on_commit is not None:
                    self._forget(session.resume_token)
            # A close handshake we started must finish before aiohttp drops the socket.
            await conn.wait_closed(settings.close_timeout + 2)
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
    reuse_port: bool = False,
) -> None:
    """Serve ``app`` until ``stop`` is set, SIGINT or SIGTERM; then shut down gracefully."""
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
        await runner.cleanup()


def app_namespace(title: str) -> str:
    """A Redis namespace from an app title: "tether demo" -> "tether-demo"."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return slug or "tether"


def _refusal(status: int, reason: str) -> web.HTTPException:
    if status == 403:
        return web.HTTPForbidden(text=reason)
    return web.HTTPUnauthorized(text=reason, headers={"WWW-Authenticate": "Bearer"})


def _bound_port(site: web.TCPSite) -> int | None:
    server = site._server
    sockets = getattr(server, "sockets", None)
    if sockets:
        return int(sockets[0].getsockname()[1])
    return None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
