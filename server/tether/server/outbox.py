"""One connection's outgoing side: frames written straight into the transport while
the peer keeps up, a bounded queue and a writer task while it falls behind, and
the bounded close handshake.

RFC 6455 framing: a server's frames are unmasked, so a text frame is a two- to
ten-byte header and the payload as is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import deque

from aiohttp import WSMsgType, web

from ..core.metrics import Metrics
from ..protocol import Close
from ..settings import Settings
from .frames import FrameGuard

__all__ = ["Connection"]

log = logging.getLogger("tether.transport")

# Above this many bytes waiting in the socket's buffer, frames queue instead of
# being written at once (the writer then waits for the socket to drain).
_DIRECT_LIMIT = 64 * 1024
_COPY_LIMIT = 16 * 1024
_PING = b"\x89\x00"  # an unmasked ping frame with no payload
_LEN2 = struct.Struct("!BBH").pack
_LEN3 = struct.Struct("!BBQ").pack


# The last small frame written straight and its wire bytes (header and payload): a
# published event goes to every subscriber as the same bytes object, framed once.
_last: tuple[bytes | None, bytes] = (None, b"")


def _frame_header(length: int) -> bytes:
    """The header of an unmasked, final text frame of ``length`` bytes."""
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return _LEN2(0x81, 126, length)
    return _LEN3(0x81, 127, length)


class _Queue(deque[bytes]):
    """Frames waiting for a peer that is behind, and their bytes."""

    __slots__ = ("bytes",)

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0


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

    # Slots, and nothing an idle connection does not need: one per connection, so its
    # size is per-session memory (the queue, with its byte count, only when behind).
    __slots__ = (
        "_closer",
        "_out",
        "_queue",
        "_settings",
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
        # Where frames are written straight (None: never; compressed frames carry
        # compressor state, they must go through aiohttp).
        self._out = None if settings.compression else transport
        self._settings = settings  # the queue's limits and the close timeout
        self._queue: _Queue | None = None  # made when first needed (it is 600 bytes)
        self._closer: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self.requested_close: tuple[int, str] | None = None
        self.closed_by_server = False
        self.closed = False
        # Keepalive (see keepalive.py): when a pong last came (0: none yet; the
        # sweep counts the session's last message too), when the unanswered ping
        # went out (0: none), and whether the peer was given up.
        self.metrics = metrics
        self.heard_at = 0.0
        self.ping_at = 0.0
        self.dead = False

    @property
    def queued_bytes(self) -> int:
        """Bytes of the frames waiting in the send queue (0 while the peer keeps up)."""
        return 0 if self._queue is None else self._queue.bytes

    @property
    def guard(self) -> FrameGuard | None:
        """The incoming side's frame guard (frames.py), for the sweep's message timeout."""
        guard: FrameGuard | None = getattr(self.ws, "guard", None)
        return guard

    def send(self, frame: bytes) -> None:
        # The hot path of a fan-out: one call per subscriber, so as little as it can be.
        global _last
        out = self._out
        if (
            out is not None
            and not self._queue
            and not self.closed
            and out.get_write_buffer_size() <= _DIRECT_LIMIT
        ):
            # (ws._closed, not the property ws.closed: a function call per frame.)
            if self.ws._closed or out.is_closing():
                self.closed = True  # the read loop sees the end and ends the session
                return
            last = _last
            if last[0] is frame:  # the same event, to the next subscriber
                out.write(last[1])
                return
            size = len(frame)
            if size < _COPY_LIMIT:
                wire = _frame_header(size) + frame
                _last = (frame, wire)  # one assignment: atomic for other threads' loops
                out.write(wire)
            else:  # not worth a copy of the frame
                out.writelines((_frame_header(size), frame))
            return
        self._enqueue(frame)

    def _enqueue(self, frame: bytes) -> None:
        if self.closed:
            return
        queue = self._queue
        if queue is None:
            queue = self._queue = _Queue()
        settings = self._settings
        if (
            len(queue) >= settings.send_queue_messages
            or queue.bytes + len(frame) > settings.send_queue_bytes
        ):
            log.warning("closing a slow consumer: its send queue is full")
            if self.metrics is not None:
                self.metrics.closed["slow_consumer"] += 1
            self.abort(Close.SLOW_CONSUMER, "send queue full")
            return
        queue.append(frame)
        queue.bytes += len(frame)
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
                queue.bytes -= len(frame)
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
                self._settings.close_timeout + 1,
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
