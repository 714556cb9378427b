"""What aiohttp's WebSocket reader lets through and RFC 6455 does not, and what it
holds without a bound: a frame-header scanner in front of it.

``FrameGuard`` sits between the connection and aiohttp's ``WebSocketReader``
(as the protocol's payload parser) and reads only frame headers, skipping
payloads, before handing the bytes on unchanged. It closes the connection

- with 1002 for a frame the client did not mask (RFC 6455 5.1) and for a
  close frame whose code a peer must not send (1004-1006, 1015, below 1000,
  1016-2999, 5000 and above: RFC 6455 7.4);
- with 1009 when the bytes of messages still being received, over every
  connection (a shared ``IncompleteBytes``), would pass
  ``incomplete_message_bytes``: aiohttp keeps an unfinished message's
  fragments (and an unfinished frame's payload) until the message completes,
  which without a bound is memory any client can pin (one message is already
  bounded by ``max_message_size``);
- with 1008 when a message takes longer than ``message_timeout`` from its
  first byte to its last (checked as bytes arrive, and by the keepalive sweep
  for a client that goes quiet mid-message: ``overdue``).

A message that arrives whole within one read costs one header parse and no
accounting. ``failed`` says the connection broke the protocol (here or in
aiohttp's reader: 1002, 1007, 1008, 1009), so its session ends instead of
being parked for a resume.
"""

from __future__ import annotations

import asyncio
import functools
import random
from typing import Any

from aiohttp import WebSocketError, web

from ..protocol import Close

__all__ = ["FrameGuard", "GuardedResponse", "IncompleteBytes", "valid_close_code"]

_DONE = (False, b"")
_FAILED = (True, b"")


def valid_close_code(code: int) -> bool:
    """May a peer send this close code (RFC 6455 7.4, and the IANA registry)?"""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class IncompleteBytes:
    """Bytes of messages still being received, over every connection, against a cap;
    and the seconds one message may take to arrive (0: no limit). Every connection's
    guard shares it (what is the same for all of them is not kept per connection)."""

    __slots__ = ("limit", "message_timeout", "total")

    def __init__(self, limit: int, message_timeout: float = 0.0) -> None:
        self.limit = limit
        self.message_timeout = message_timeout
        self.total = 0


class FrameGuard:
    """One connection's frame-header scanner, in front of aiohttp's reader."""

    # Slots, and nothing every connection shares (the budget has the timeout; the loop
    # is the running one): one per connection, so its size is per-session memory.
    __slots__ = (
        "_budget",
        "_fin",
        "_head",
        "_held",
        "_in_data",
        "_left",
        "_msg",
        "_open",
        "_parser",
        "_queue",
        "failed",
        "started",
    )

    def __init__(self, parser: Any, queue: Any, budget: IncompleteBytes) -> None:
        self._parser = parser  # aiohttp's WebSocketReader
        self._queue = queue  # its message queue (where an error goes)
        self._budget = budget
        self._head = b""  # an incomplete frame header from the last read
        self._left = 0  # payload bytes of the current frame still to come
        self._in_data = False  # the current frame is a data frame
        self._fin = False  # ... and the last of its message
        self._open = False  # a message has begun and not ended
        self._msg = 0  # payload bytes of that message so far
        self._held = 0  # what of them is counted in the budget
        self.started = 0.0  # when the open message was first seen unfinished (0: none)
        self.failed = False

    def feed_eof(self) -> None:
        self.release()
        self._parser.feed_eof()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self.failed:
            return _FAILED
        error = self._scan(data)
        if error is None and self._open:
            error = self._account()
        elif self._held:
            self.release()
        if error is None:
            result: tuple[bool, bytes] = self._parser.feed_data(data)
            if result[0]:
                self.failed = True  # aiohttp's reader found a protocol error
            return result
        start, code, reason = error
        if start > 0:
            self._parser.feed_data(data[:start])
        return self.fail(code, reason)

    def fail(self, code: int, reason: str) -> tuple[bool, bytes]:
        """Stop reading: the handler's ``receive`` gets the error and closes with ``code``."""
        self.failed = True
        self.release()
        self._queue.set_exception(WebSocketError(code, reason))
        return _FAILED

    def release(self) -> None:
        """Give back what the open message holds of the shared budget."""
        self._budget.total -= self._held
        self._held = 0

    def overdue(self, now: float) -> bool:
        """Has the open message been arriving for longer than ``message_timeout``?"""
        timeout = self._budget.message_timeout
        return timeout > 0 and self.started > 0 and now - self.started > timeout

    def _account(self) -> tuple[int, int, str] | None:
        """A message is still open after this read: count it and bound its time."""
        now = asyncio.get_running_loop().time()  # (not kept: a slot per connection)
        if not self.started:
            self.started = now
        elif self.overdue(now):
            return 0, Close.POLICY_VIOLATION, "message took too long"
        budget = self._budget
        budget.total += self._msg - self._held
        self._held = self._msg
        if budget.total > budget.limit:
            return 0, Close.MESSAGE_TOO_BIG, "too many bytes of unfinished messages"
        return None

    def _scan(self, data: bytes) -> tuple[int, int, str] | None:
        """Walk the frame headers in ``data``; (offset, code, reason) of a bad frame."""
        skip = len(self._head)
        if skip:
            data = self._head + data
            self._head = b""
        pos = 0
        end = len(data)
        while pos < end:
            left = self._left
            if left:
                take = left if left <= end - pos else end - pos
                pos += take
                self._left = left - take
                if self._in_data:
                    self._msg += take
                    if self._left == 0 and self._fin:
                        self._close_message()
                continue
            if end - pos < 2:
                self._head = data[pos:]
                return None
            first, second = data[pos], data[pos + 1]
            if not second & 0x80:
                return pos - skip, Close.PROTOCOL_ERROR, "client frames must be masked"
            length = second & 0x7F
            size = 6 if length < 126 else 8 if length == 126 else 14
            opcode = first & 0x0F
            if opcode == 8 and 2 <= length <= 125:
                size += 2  # the close code, to check it
            if end - pos < size:
                self._head = data[pos:]
                return None
            if length == 126:
                length = int.from_bytes(data[pos + 2 : pos + 4])
            elif length == 127:
                length = int.from_bytes(data[pos + 2 : pos + 10])
            if opcode == 8 and 2 <= length <= 125:
                code = ((data[pos + 6] ^ data[pos + 2]) << 8) | (data[pos + 7] ^ data[pos + 3])
                if not valid_close_code(code):
                    return pos - skip, Close.PROTOCOL_ERROR, f"invalid close code {code}"
                size -= 2  # the code is payload: aiohttp reads it again
            pos += size
            self._left = length
            if opcode < 8:
                self._in_data = True
                self._fin = bool(first & 0x80)
                self._open = True
                if not length and self._fin:
                    self._close_message()
            else:
                self._in_data = False
        return None

    def _close_message(self) -> None:
        self._open = False
        self._msg = 0
        self.started = 0.0


# What aiohttp's WebSocketWriter makes for every connection and a server's writers can
# share: its masking bits (a server never masks a frame: RFC 6455 5.1) and the set that
# holds its large compressed sends' tasks until they finish (any writer's tasks may be
# in one set). About 480 bytes per connection.
_NO_MASK_BITS = functools.partial(random.Random().getrandbits, 32)
_SEND_TASKS: set[asyncio.Task[None]] = set()


def _share_writer_parts(writer: Any) -> None:
    if not writer.use_mask and hasattr(writer, "get_random_bits"):
        writer.get_random_bits = _NO_MASK_BITS
    if type(getattr(writer, "_background_tasks", None)) is set and not writer._background_tasks:
        writer._background_tasks = _SEND_TASKS


class GuardedResponse(web.WebSocketResponse):
    """A ``WebSocketResponse`` whose incoming bytes pass a ``FrameGuard`` first (and
    whose writer shares what every connection's can)."""

    guard: FrameGuard | None = None

    def __init__(self, budget: IncompleteBytes, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._budget = budget

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: Any) -> None:
        # Bytes that came with the handshake go through the guard too: hold them back
        # while aiohttp installs its reader, then put the guard in front of it.
        handler = request.protocol
        tail = handler._message_tail
        handler._message_tail = b""
        super()._post_start(request, protocol, writer)
        _share_writer_parts(writer)
        guard = self.guard = FrameGuard(self._parser, self._reader, self._budget)
        handler._payload_parser = guard
        if tail:
            eof, _ = guard.feed_data(tail)
            if eof:
                handler.close()
