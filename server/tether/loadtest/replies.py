"""``Connection``: what every client stack of the load tester shares, whatever carries
its frames: submit ids, the futures of the submits in flight, and the judgement of
each frame the server sends (a reply, a message about no submit, or a violation).

``LeanConnection`` (aiohttp, ``connection.py``) and ``PicowsConnection`` (picows,
``picows_connection.py``) are its two transports; the driver sees only this.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final

from ..errors import RemoteProtocolError
from ..protocol import Error, Result, ServerMessage, Welcome, decode_server, encode_submit

__all__ = ["ID_RANGE", "MAX_REPLY_SIZE", "Connection", "ConnectionLost", "OnReply", "Reply"]

# Largest reply a generator connection accepts (a chat history is far smaller).
MAX_REPLY_SIZE: Final = 16 << 20
# Submit ids of one generator connection: (n + 1) * ID_RANGE + k, k < ID_RANGE.
ID_RANGE: Final = 1 << 32

Reply = Result | Error
"""What answers a submit: its result, or its error."""

OnReply = Callable[["Reply | None"], None]
"""Called with a submit's reply, or with ``None`` when the connection closed first."""


class ConnectionLost(Exception):
    """The connection closed while a submit waited for its reply."""


class Connection:
    """A minimal client of the tether protocol, for generating load.

    Replies are matched to submits by id. Ids count up from ``first_id``;
    giving every connection its own range (``ID_RANGE`` apart) makes a reply
    meant for another session stand out. A reply whose id was never sent on
    this connection, or was already answered, is reported through
    ``on_violation``, and so is a frame the protocol does not allow (after
    which the connection is closed: nothing the server says can be trusted);
    messages that are not replies go to ``on_frame`` (an ``Error`` without an
    id among them), types this client does not know nowhere.

    A transport subclass hands every text frame it receives to ``_receive``, and
    calls ``_lost`` once when the connection is gone. One whose sends are plain
    calls (``sends_now``) also offers ``submit_then``: the reply goes straight to a
    callback, from the read of its frame, with no future and no task in between.
    """

    sends_now: bool = False
    """Whether ``submit_then`` works (the transport writes without awaiting)."""

    stack: str = "?"
    """The client stack's name, as ``--client`` spells it."""

    def __init__(
        self,
        welcome: Welcome,
        on_frame: Callable[[ServerMessage], None],
        on_violation: Callable[[str], None],
        first_id: int = 1,
    ) -> None:
        self.session = welcome.session
        self.welcome = welcome
        self._on_frame = on_frame
        self._on_violation = on_violation
        self._first_id = self._next_id = first_id
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._callbacks: dict[int, OnReply] = {}
        self.closed = False
        self._loop = asyncio.get_running_loop()

    def submit(self, fn: str, data: list[Any]) -> Awaitable[Reply]:
        """Send a submit; the awaitable gives its ``Result`` or ``Error``."""
        raise NotImplementedError

    def submit_then(self, fn: str, data: list[Any], on_reply: OnReply) -> None:
        """Send a submit; ``on_reply`` gets its reply (only where ``sends_now``)."""
        raise NotImplementedError

    def _new_submit(self, fn: str, data: list[Any]) -> tuple[bytes, int, asyncio.Future[Reply]]:
        """The frame, id and future of the next submit (raises when closed)."""
        if self.closed:
            raise ConnectionLost("the connection is closed")
        id = self._next_id
        self._next_id = id + 1
        future: asyncio.Future[Reply] = self._loop.create_future()
        self._pending[id] = future
        return encode_submit(id, fn, data), id, future

    @property
    def in_flight(self) -> int:
        return sum(1 for f in self._pending.values() if not f.done()) + len(self._callbacks)

    def _receive(self, payload: bytes) -> bool:
        """Judge one text frame; False when it broke the protocol (close the connection)."""
        try:
            message = decode_server(payload)
        except RemoteProtocolError as exc:
            self._on_violation(f"the server broke the protocol: {exc.message}")
            return False
        if type(message) is Result or type(message) is Error:
            id = message.id
            on_reply = self._callbacks.pop(id, None) if type(id) is int else None
            if on_reply is not None:
                on_reply(message)
                return True
            future = self._pending.pop(id, None) if type(id) is int else None
            if future is not None:
                if not future.done():
                    future.set_result(message)
            elif id is None:
                self._on_frame(message)  # an error about no submit
            else:
                self._stray(message, id)
        elif message is not None:
            self._on_frame(message)
        return True

    def _stray(self, reply: Reply, id: int | str) -> None:
        kind = type(reply).__name__.lower()
        if type(id) is int and self._first_id <= id < self._next_id:
            self._on_violation(f"a second reply to submit {id} ({kind})")
        else:
            self._on_violation(f"a {kind} for submit {id!r}, which was never sent")

    def _lost(self, close_code: int | None) -> None:
        """The connection is gone: every submit still waiting fails."""
        self.closed = True
        if self._callbacks:
            callbacks, self._callbacks = self._callbacks, {}
            for on_reply in callbacks.values():
                on_reply(None)
        if self._pending:
            lost = ConnectionLost(f"connection closed ({close_code})")
            pending, self._pending = self._pending, {}
            for future in pending.values():
                if not future.done():
                    future.set_exception(lost)

    async def wait_closed(self) -> None:
        """Return once the connection has closed, from either side."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError
