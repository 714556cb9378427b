"""``LeanConnection``: the built-in scenarios' client, lean so one core drives more load.

It speaks the protocol through its client half (``tether.protocol``: encode
submits, decode each frame once into a typed message) on aiohttp, and does
nothing else: no resume, no deltas, no topics API. It costs less CPU per
submit than ``tether.Client`` (websockets), as ``bench/clients.py`` measures.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal

import aiohttp
from aiohttp import WSCloseCode, WSMsgType

from ..errors import RemoteProtocolError
from ..protocol import (
    Error,
    Result,
    ServerMessage,
    Welcome,
    decode_server,
    decode_welcome,
    encode_submit,
)

__all__ = ["ID_RANGE", "MAX_REPLY_SIZE", "ConnectionLost", "LeanConnection"]

# Largest reply a generator connection accepts (a chat history is far smaller).
MAX_REPLY_SIZE: Final = 16 << 20
# Submit ids of one generator connection: (n + 1) * ID_RANGE + k, k < ID_RANGE.
ID_RANGE: Final = 1 << 32

Reply = Result | Error
"""What answers a submit: its result, or its error."""


class ConnectionLost(Exception):
    """The connection closed while a submit waited for its reply."""


class LeanConnection:
    """A minimal client of the tether protocol on aiohttp, for generating load.

    Replies are matched to submits by id. Ids count up from ``first_id``;
    giving every connection its own range (``ID_RANGE`` apart) makes a reply
    meant for another session stand out. A reply whose id was never sent on
    this connection, or was already answered, is reported through
    ``on_violation``, and so is a frame the protocol does not allow (after
    which the connection is closed: nothing the server says can be trusted);
    messages that are not replies go to ``on_frame`` (an ``Error`` without an
    id among them), types this client does not know nowhere.
    """

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse[Literal[False]],
        welcome: Welcome,
        on_frame: Callable[[ServerMessage], None],
        on_violation: Callable[[str], None],
        first_id: int = 1,
    ) -> None:
        self.ws = ws
        self.session = welcome.session
        self._on_frame = on_frame
        self._on_violation = on_violation
        self._first_id = self._next_id = first_id
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self.closed = False
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())

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
        if self.closed:
            raise ConnectionLost("the connection is closed")
        id = self._next_id
        self._next_id += 1
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[id] = future
        return self._send_and_wait(encode_submit(id, fn, data), id, future)

    async def _send_and_wait(self, frame: bytes, id: int, future: asyncio.Future[Reply]) -> Reply:
        try:
            await self.ws.send_frame(frame, WSMsgType.TEXT)
            return await future
        finally:
            self._pending.pop(id, None)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def _read_loop(self) -> None:
        ws = self.ws
        pending = self._pending
        try:
            while True:
                msg = await ws.receive()
                if msg.type is not WSMsgType.TEXT:
                    break
                try:
                    message = decode_server(msg.data)
                except RemoteProtocolError as exc:
                    self._on_violation(f"the server broke the protocol: {exc.message}")
                    await ws.close(code=WSCloseCode.PROTOCOL_ERROR)
                    break
                if isinstance(message, (Result, Error)):
                    id = message.id
                    future = pending.pop(id, None) if type(id) is int else None
                    if future is not None:
                        if not future.done():
                            future.set_result(message)
                    elif id is None:
                        self._on_frame(message)  # an error about no submit
                    else:
                        self._stray(message, id)
                elif message is not None:
                    self._on_frame(message)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.closed = True
            lost = ConnectionLost(f"connection closed ({ws.close_code})")
            for future in pending.values():
                if not future.done():
                    future.set_exception(lost)

    def _stray(self, reply: Reply, id: int | str) -> None:
        kind = type(reply).__name__.lower()
        if type(id) is int and self._first_id <= id < self._next_id:
            self._on_violation(f"a second reply to submit {id} ({kind})")
        else:
            self._on_violation(f"a {kind} for submit {id!r}, which was never sent")

    async def wait_closed(self) -> None:
        """Return once the connection has closed, from either side."""
        await asyncio.wait((self._reader,))

    async def close(self) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            await self.ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
