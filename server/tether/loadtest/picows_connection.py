"""``PicowsConnection``: the load tester's picows client stack (``--client picows``).

picows (``pip install tether[fast]``) is a C-accelerated asyncio WebSocket
library: frames arrive in a callback, already parsed, and a send is one call
that writes at once, with no coroutine or task of its own per connection. So a
reply resolves its submit's future straight from the socket's read, and one
generator core carries about what the server it measures can answer (``bench/
generator.py``). The protocol is spoken as with aiohttp, through its client
half (``replies.Connection``); only this module imports picows, and only when
the picows stack is chosen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from ..protocol import ServerMessage, decode_welcome, encode_submit
from .replies import MAX_REPLY_SIZE, Connection, ConnectionLost, OnReply, Reply

__all__ = ["PicowsConnection"]

# Seconds ``close`` waits for the server to answer its close frame.
CLOSE_TIMEOUT: Final = 5.0

# picows makes a child logging.Logger per connection for a Logger it is given (and asks
# it, uncached, whether to log the connection at info): an adapter over one logger
# is not one, so every connection shares that logger and its cached levels.
_LOG: Final = logging.LoggerAdapter(logging.getLogger("picows.client"), {})

_TEXT: Final = WSMsgType.TEXT
_CONTINUATION: Final = WSMsgType.CONTINUATION
_CLOSE: Final = WSMsgType.CLOSE


class _Listener(WSListener):
    """picows' callbacks for one connection: whole text messages go to the connection
    (or, before it exists, to the welcome), the close code is kept."""

    def __init__(self) -> None:
        super().__init__()
        self.conn: PicowsConnection | None = None
        self.transport: WSTransport | None = None
        loop = asyncio.get_running_loop()
        self.first: asyncio.Future[bytes] = loop.create_future()
        self.early: list[bytes] = []  # text frames after the welcome, before ``conn``
        self.parts: list[bytes] | None = None  # a fragmented message so far
        self.size = 0
        self.close_code: int | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is _TEXT and frame.fin and self.parts is None:
            conn = self.conn
            if conn is None:
                self._message(transport, frame.get_payload_as_bytes())
            elif not conn._receive(frame.get_payload_as_bytes()):  # the hot path, inlined
                transport.send_close(WSCloseCode.PROTOCOL_ERROR)
                transport.disconnect()
        elif kind is _TEXT or (kind is _CONTINUATION and self.parts is not None):
            payload = frame.get_payload_as_bytes()
            if self.parts is None:
                self.parts, self.size = [], 0
            self.parts.append(payload)
            self.size += len(payload)
            if self.size > MAX_REPLY_SIZE:
                transport.send_close(WSCloseCode.MESSAGE_TOO_BIG)
                transport.disconnect()
            elif frame.fin:
                whole, self.parts = b"".join(self.parts), None
                self._message(transport, whole)
        elif kind is _CLOSE:
            code = frame.get_payload_as_bytes()[:2]
            self.close_code = int.from_bytes(code, "big") if len(code) == 2 else None
            if not transport.is_close_frame_sent:
                transport.send_close(WSCloseCode.OK)
            if self.conn is not None:
                self.conn._lost(self.close_code)  # nothing follows a close frame
            # The server closes the TCP connection first (RFC 6455, 7.1.1), so that the
            # TIME_WAIT is its own, not this side's: a generator that opens hundreds of
            # connections a second would otherwise fill its ephemeral ports, and every
            # connect() would get slower. Only if it does not, after a while, does this side.
            asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, transport.disconnect)
        # Binary frames (the server sends none) and pongs are ignored; picows answers pings.

    def _message(self, transport: WSTransport, payload: bytes) -> None:
        conn = self.conn
        if conn is not None:
            if not conn._receive(payload):
                transport.send_close(WSCloseCode.PROTOCOL_ERROR)
                transport.disconnect()
        elif not self.first.done():
            self.first.set_result(payload)
        else:
            self.early.append(payload)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.first.done():
            self.first.set_exception(
                ConnectionError(f"the connection closed before the welcome ({self.close_code})")
            )
        if self.conn is not None:
            self.conn._lost(self.close_code)


class PicowsConnection(Connection):
    """A minimal client of the tether protocol on picows, for generating load
    (``replies.Connection`` says how replies are matched and what is reported)."""

    stack = "picows"
    sends_now = True

    def __init__(
        self,
        listener: _Listener,
        transport: WSTransport,
        welcome_payload: bytes,
        on_frame: Callable[[ServerMessage], None],
        on_violation: Callable[[str], None],
        first_id: int = 1,
    ) -> None:
        super().__init__(decode_welcome(welcome_payload), on_frame, on_violation, first_id)
        self.transport = transport
        self._listener = listener
        self._send = transport.send
        listener.conn = self
        early, listener.early = listener.early, []
        for payload in early:
            listener._message(transport, payload)
        if transport.is_disconnected:
            self._lost(listener.close_code)

    @classmethod
    async def open(
        cls,
        url: str,
        on_frame: Callable[[ServerMessage], None],
        on_violation: Callable[[str], None],
        first_id: int = 1,
    ) -> PicowsConnection:
        """Connect and read the welcome; raises ``RemoteProtocolError`` when it is not one
        in this client's protocol version, ``ConnectionError`` when none came."""
        listener = _Listener()
        transport, _ = await ws_connect(
            lambda: listener,
            url,
            max_frame_size=MAX_REPLY_SIZE,
            websocket_handshake_timeout=None,
            logger_name=_LOG,
        )
        try:
            return cls(listener, transport, await listener.first, on_frame, on_violation, first_id)
        except BaseException:
            transport.disconnect(graceful=False)
            raise

    def submit(self, fn: str, data: list[Any]) -> asyncio.Future[Reply]:
        """Send a submit; the future gives its ``Result`` or ``Error``."""
        frame, _, future = self._new_submit(fn, data)
        self._send(_TEXT, frame)
        return future

    def submit_then(self, fn: str, data: list[Any], on_reply: OnReply) -> None:
        """Send a submit; ``on_reply`` gets its reply, from the read of its frame."""
        if self.closed:
            raise ConnectionLost("the connection is closed")
        id = self._next_id
        self._next_id = id + 1
        self._callbacks[id] = on_reply
        self._send(_TEXT, encode_submit(id, fn, data))

    async def wait_closed(self) -> None:
        await self.transport.wait_disconnected()

    async def close(self) -> None:
        """Close with 1000 (so the server ends the session at once), wait for its answer."""
        self.closed = True
        transport = self.transport
        if transport.is_disconnected:
            return
        if not transport.is_close_frame_sent:
            transport.send_close(WSCloseCode.OK)
            # A server that neither answers nor closes is dropped (no asyncio.timeout:
            # a timer handle is cheaper, and this runs once per conversation).
            self._loop.call_later(CLOSE_TIMEOUT, transport.disconnect, False)
        await transport.wait_disconnected()
