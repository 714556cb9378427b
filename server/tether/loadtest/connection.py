"""``LeanConnection``: the load tester's aiohttp client stack (``--client aiohttp``).

It speaks the protocol through its client half (``tether.protocol``: encode
submits, decode each frame once into a typed message) on aiohttp, and does
nothing else: no resume, no deltas, no topics API. It costs less CPU per
submit than ``tether.Client`` (websockets), as ``bench/clients.py`` measures;
``PicowsConnection`` (``picows_connection.py``) costs less still, and is used
when picows is installed. What they share is ``replies.Connection``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import aiohttp
from aiohttp import WSCloseCode, WSMsgType

from ..protocol import ServerMessage, Welcome, decode_welcome
from .replies import ID_RANGE, MAX_REPLY_SIZE, Connection, ConnectionLost, Reply

__all__ = ["ID_RANGE", "MAX_REPLY_SIZE", "ConnectionLost", "LeanConnection"]


class LeanConnection(Connection):
    """A minimal client of the tether protocol on aiohttp, for generating load
    (``replies.Connection`` says how replies are matched and what is reported)."""

    stack = "aiohttp"

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse[Literal[False]],
        welcome: Welcome,
        on_frame: Callable[[ServerMessage], None],
        on_violation: Callable[[str], None],
        first_id: int = 1,
    ) -> None:
        super().__init__(welcome, on_frame, on_violation, first_id)
        self.ws = ws
        self._reader = self._loop.create_task(self._read_loop())

    @classmethod
    async def open(
        cls,
        http: aiohttp.ClientSession,
        url: str,
        on_frame: Callable[[ServerMessage], None],
        on_violation: Callable[[str], None],
        first_id: int = 1,
    ) -> LeanConnection:
        """Connect and read the welcome; raises ``RemoteProtocolError`` when it is not one
        in this client's protocol version, ``ConnectionError`` when none came."""
        ws = await http.ws_connect(
            url, max_msg_size=MAX_REPLY_SIZE, compress=0, autoping=True, decode_text=False
        )
        try:
            msg = await ws.receive()
            if msg.type is not WSMsgType.TEXT:
                raise ConnectionError(f"the connection closed before the welcome ({msg.type!r})")
            welcome = decode_welcome(msg.data)
        except BaseException:
            await ws.close()
            raise
        return cls(ws, welcome, on_frame, on_violation, first_id)

    def submit(self, fn: str, data: list[Any]) -> Awaitable[Reply]:
        """Send a submit; the awaitable gives its ``Result`` or ``Error``."""
        frame, id, future = self._new_submit(fn, data)
        return self._send_and_wait(frame, id, future)

    async def _send_and_wait(self, frame: bytes, id: int, future: asyncio.Future[Reply]) -> Reply:
        try:
            await self.ws.send_frame(frame, WSMsgType.TEXT)
            return await future
        finally:
            self._pending.pop(id, None)

    async def _read_loop(self) -> None:
        ws = self.ws
        try:
            while True:
                msg = await ws.receive()
                if msg.type is not WSMsgType.TEXT:
                    break
                if not self._receive(msg.data):
                    await ws.close(code=WSCloseCode.PROTOCOL_ERROR)
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._lost(ws.close_code)

    async def wait_closed(self) -> None:
        await asyncio.wait((self._reader,))

    async def close(self) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            await self.ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
