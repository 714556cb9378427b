"""Per-function concurrency limits and their bounded, position-reporting queues,
fair between sessions.

A ``Gate`` admits up to ``limit`` running submits of one function across all
sessions, and at most ``per_session`` of them from any one session (a
setting). A submit that finds no slot it may take waits in its session's FIFO
queue (``max_queue`` waiters in all); when a slot frees up, it goes to the
waiting session that holds the fewest slots, ties served round robin (each in
its turn gets one slot, then goes to the back of the ring), so one session
with many queued submits cannot starve the others. A waiter is told its
estimated 1-based position (``queued``: the submits round robin would start
before it, as the queue stands), again whenever it changes (at most once per
``interval`` seconds per gate), and ``started`` when it gets a slot. A submit
that finds a free slot gets neither message: the fast path stays one reply
per submit; nor does one that gets a slot within ``notice_delay`` seconds (a
setting), so a briefly busy function does not triple the messages per submit.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Hashable, Iterator

from ..errors import QueueFull
from ..protocol import Code, SubmitId, encode_error, encode_queued, encode_started

__all__ = ["Gate", "QueueFull"]


class _Waiter:
    __slots__ = ("future", "id", "key", "send", "sent_position", "since")

    def __init__(
        self,
        future: asyncio.Future[None],
        id: SubmitId,
        send: Callable[[bytes], None],
        since: float,
        key: Hashable,
    ) -> None:
        self.future = future
        self.id = id
        self.send = send
        self.sent_position = 0
        self.since = since
        self.key = key


class Gate:
    def __init__(
        self,
        limit: int | None,
        max_queue: int,
        interval: float,
        notice_delay: float = 0.0,
        per_session: int | None = None,
    ) -> None:
        self.limit = limit
        self.per_session = per_session or None  # 0: no per-session cap
        self.notice_delay = notice_delay
        self.max_queue = max_queue
        self.interval = interval
        self.running = 0
        # Slots held per session (only while it holds any), and each session's
        # waiters, oldest first; the dict's order is the round-robin ring.
        self._held: dict[Hashable, int] = {}
        self._queues: dict[Hashable, deque[_Waiter]] = {}
        self._waiting = 0
        # Waiters not told their position yet, oldest first; one timer for all of
        # them (not one per waiter: under load most never need a notice).
        self._untold: deque[_Waiter] = deque()
        self._notice_timer: asyncio.TimerHandle | None = None
        self._flush_scheduled = False
        # The loop, found on first use: asking for it again costs a getpid() system
        # call per submit on Python 3.11 (where get_running_loop checks the pid).
        self._loop: asyncio.AbstractEventLoop | None = None

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def __len__(self) -> int:
        return self._waiting

    def refusal(self, id: SubmitId, name: str) -> bytes:
        """The ``queue_full`` answer to a submit of function ``name`` that found it full."""
        return encode_error(
            id,
            Code.QUEUE_FULL,
            f"{name} has {len(self)} submits waiting (its limit); try again later",
        )

    def try_acquire(self, key: Hashable = None) -> bool:
        """Take a slot at once if this session may (the fast path).

        Nobody waiting could take a free slot (every handover happens as soon as
        one frees), so a free slot under the session's cap is this one's to take.
        """
        if self.limit is None:
            self.running += 1
            return True
        if self.running >= self.limit:
            return False
        held = self._held.get(key, 0)
        if self.per_session is not None and held >= self.per_session:
            return False
        if key in self._queues:
            return False  # its own earlier submits come first
        self.running += 1
        self._held[key] = held + 1
        return True

    def full(self) -> bool:
        return self._waiting >= self.max_queue

    async def wait(self, id: SubmitId, send: Callable[[bytes], None], key: Hashable = None) -> None:
        """Queue for a slot; return holding it. Raises QueueFull, or CancelledError."""
        if self.full():
            raise QueueFull
        loop = self._loop or self._get_loop()
        waiter = _Waiter(loop.create_future(), id, send, loop.time(), key)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
        queue.append(waiter)
        self._waiting += 1
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
                self.release(key)  # the slot was handed over just as we were cancelled
            else:
                self._remove(waiter)
                self._positions_changed()
            raise
        if waiter.sent_position:
            send(encode_started(id))

    def _remove(self, waiter: _Waiter) -> None:
        queue = self._queues.get(waiter.key)
        if queue is None or waiter not in queue:
            return  # already handed out (or skipped) by _dispatch
        queue.remove(waiter)
        self._waiting -= 1
        if not queue:
            del self._queues[waiter.key]

    def _order(self) -> Iterator[_Waiter]:
        """The waiters in the order round robin would start them, as the queue stands
        (per-session caps aside)."""
        queues = list(self._queues.values())
        round_ = 0
        while queues:
            for queue in queues:
                yield queue[round_]
            round_ += 1
            queues = [queue for queue in queues if len(queue) > round_]

    def _notices(self) -> None:
        """Tell the waiters queued for ``notice_delay`` or longer their positions."""
        self._notice_timer = None
        untold = self._untold
        loop = self._get_loop()
        cutoff = loop.time() - self.notice_delay
        due: list[_Waiter] = []
        while untold and (untold[0].since <= cutoff or untold[0].future.done()):
            waiter = untold.popleft()
            if not waiter.future.done():
                due.append(waiter)
        if due:  # one pass over the queue for all of them
            wanted = set(due)
            for position, waiter in enumerate(self._order(), 1):
                if waiter in wanted:
                    waiter.sent_position = position
                    waiter.send(encode_queued(waiter.id, position))
        if untold:
            self._notice_timer = loop.call_at(untold[0].since + self.notice_delay, self._notices)

    def _notice(self, waiter: _Waiter) -> None:
        for position, other in enumerate(self._order(), 1):
            if other is waiter:
                waiter.sent_position = position
                waiter.send(encode_queued(waiter.id, position))
                return

    def release(self, key: Hashable = None) -> None:
        """Give back a finished submit's slot; hand free slots to waiting sessions."""
        self.running -= 1
        if self.limit is None:
            return
        held = self._held[key] - 1
        if held:
            self._held[key] = held
        else:
            del self._held[key]
        queue = self._queues.pop(key, None)
        if queue is not None:
            self._queues[key] = queue  # it just had a turn: to the back of the ring
        self._dispatch()

    def _dispatch(self) -> None:
        """While a slot is free, the waiting session under its cap that holds the
        fewest slots (the first in the ring among equals) starts its oldest waiter
        and goes to the back of the ring."""
        assert self.limit is not None
        queues = self._queues
        held = self._held
        cap = self.per_session
        started = False
        while self.running < self.limit and queues:
            key: Hashable = None
            fewest = -1
            for candidate in queues:
                holds = held.get(candidate, 0)
                if (cap is None or holds < cap) and (fewest < 0 or holds < fewest):
                    key, fewest = candidate, holds
                    if holds == 0:
                        break  # nobody holds fewer
            if fewest < 0:
                break  # every waiting session holds its share already
            queue = queues.pop(key)
            waiter = queue.popleft()
            self._waiting -= 1
            if queue:
                queues[key] = queue  # to the back of the ring
            if waiter.future.done():
                continue  # cancelled meanwhile
            self.running += 1
            held[key] = held.get(key, 0) + 1
            waiter.future.set_result(None)
            started = True
        if started:
            self._positions_changed()

    def _positions_changed(self) -> None:
        if self._flush_scheduled or not self._queues:
            return
        self._flush_scheduled = True
        self._get_loop().call_later(self.interval, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        for position, waiter in enumerate(self._order(), 1):
            if waiter.sent_position and waiter.sent_position != position:
                waiter.sent_position = position
                waiter.send(encode_queued(waiter.id, position))
