"""Per-function concurrency limits and their bounded, position-reporting queues.

A ``Gate`` admits up to ``limit`` running submits of one function across all
sessions. A submit that finds it full waits in a FIFO queue of at most
``max_queue`` entries and is told its 1-based position (``queued``), again
whenever the position changes (at most once per ``interval`` seconds per
gate), and ``started`` when it gets a slot. A submit that finds a free slot
gets neither message: the fast path stays one reply per submit; nor does one
that gets a slot within ``notice_delay`` seconds (a setting), so a briefly
busy function does not triple the messages per submit.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from ..errors import QueueFull
from ..protocol import SubmitId, encode_queued, encode_started

__all__ = ["Gate", "QueueFull"]


class _Waiter:
    __slots__ = ("future", "id", "send", "sent_position", "since")

    def __init__(
        self,
        future: asyncio.Future[None],
        id: SubmitId,
        send: Callable[[bytes], None],
        since: float,
    ) -> None:
        self.future = future
        self.id = id
        self.send = send
        self.sent_position = 0
        self.since = since


class Gate:
    def __init__(
        self, limit: int | None, max_queue: int, interval: float, notice_delay: float = 0.0
    ) -> None:
        self.limit = limit
        self.notice_delay = notice_delay
        self.max_queue = max_queue
        self.interval = interval
        self.running = 0
        self.queue: deque[_Waiter] = deque()
        # Waiters not told their position yet, oldest first; one timer for all of
        # them (not one per waiter: under load most never need a notice).
        self._untold: deque[_Waiter] = deque()
        self._notice_timer: asyncio.TimerHandle | None = None
        self._flush_scheduled = False

    def __len__(self) -> int:
        return len(self.queue)

    def try_acquire(self) -> bool:
        """Take a slot at once if one is free and nobody is waiting (the fast path)."""
        if self.limit is None or (self.running < self.limit and not self.queue):
            self.running += 1
            return True
        return False

    def full(self) -> bool:
        return len(self.queue) >= self.max_queue

    async def wait(self, id: SubmitId, send: Callable[[bytes], None]) -> None:
        """Queue for a slot; return holding it. Raises QueueFull, or CancelledError."""
        if self.full():
            raise QueueFull
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), id, send, loop.time())
        self.queue.append(waiter)
        if self.notice_delay > 0:
            # A wait shorter than notice_delay is not worth two extra messages.
            self._untold.append(waiter)
            if self._notice_timer is None:
                self._notice_timer = loop.call_at(waiter.since + self.notice_delay, self._notices)
        else:
            self._notice(waiter)
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            else:
                self.queue.remove(waiter)
                self._positions_changed()
            raise
        if waiter.sent_position:
            send(encode_started(id))

    def _notices(self) -> None:
        """Tell the waiters queued for ``notice_delay`` or longer their positions."""
        self._notice_timer = None
        untold = self._untold
        cutoff = asyncio.get_running_loop().time() - self.notice_delay
        due: list[_Waiter] = []
        while untold and (untold[0].since <= cutoff or untold[0].future.done()):
            waiter = untold.popleft()
            if not waiter.future.done():
                due.append(waiter)
        if due:  # one pass over the queue for all of them
            wanted = set(due)
            for position, waiter in enumerate(self.queue, 1):
                if waiter in wanted:
                    waiter.sent_position = position
                    waiter.send(encode_queued(waiter.id, position))
        if untold:
            self._notice_timer = asyncio.get_running_loop().call_at(
                untold[0].since + self.notice_delay, self._notices
            )

    def _notice(self, waiter: _Waiter) -> None:
        try:
            position = self.queue.index(waiter) + 1
        except ValueError:
            return  # it left the queue meanwhile
        waiter.sent_position = position
        waiter.send(encode_queued(waiter.id, position))

    def release(self) -> None:
        """Give a finished submit's slot to the first waiter, if any."""
        while self.queue:
            waiter = self.queue.popleft()
            if not waiter.future.done():
                waiter.future.set_result(None)  # the slot passes on: running is unchanged
                self._positions_changed()
                return
        self.running -= 1

    def _positions_changed(self) -> None:
        if self._flush_scheduled or not self.queue:
            return
        self._flush_scheduled = True
        asyncio.get_running_loop().call_later(self.interval, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        for position, waiter in enumerate(self.queue, 1):
            if waiter.sent_position and waiter.sent_position != position:
                waiter.sent_position = position
                waiter.send(encode_queued(waiter.id, position))
