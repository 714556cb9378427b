"""Ordering submits of one session by the state slots they touch.

Submits that touch the same slot run one at a time, in arrival order: each
slot has a *tail*, the completion future of the last submit that claimed it,
and a new submit waits for the tails of all its slots before it runs. The
claim happens synchronously when the frame is read, so arrival order is the
order of execution. Submits that share no slot do not wait for each other.

A submit's turn ends (``release``) only once every submit it waited for is
over, however it ended itself: one cancelled while waiting must not let the
next overtake its predecessors, which would then read the state before their
change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

__all__ = ["SlotOrder", "Turn"]


Turn = tuple[Sequence[Any], list["asyncio.Future[None]"], "asyncio.Future[None]"]
"""One submit's place in the order of the slots it touches: (slots, the tails it
waits for, its own completion future). A tuple: one per submit, on the hot path."""


class SlotOrder:
    """The tails of one session's state slots."""

    __slots__ = ("_tails",)

    def __init__(self) -> None:
        self._tails: dict[Any, asyncio.Future[None]] = {}

    def claim(self, slots: Sequence[Any], loop: asyncio.AbstractEventLoop) -> Turn:
        """Take the next turn on ``slots`` (call it when the submit arrives)."""
        done: asyncio.Future[None] = loop.create_future()
        waits: list[asyncio.Future[None]] = []
        tails = self._tails
        for slot in slots:
            tail = tails.get(slot)
            if tail is not None and tail not in waits:
                waits.append(tail)
            tails[slot] = done
        return (slots, waits, done)

    @staticmethod
    async def wait(turn: Turn) -> None:
        """Return once every submit this turn follows is over."""
        for tail in turn[1]:
            # Shielded: cancelling this submit must not cancel the one it waits for.
            await asyncio.shield(tail)

    def release(self, turn: Turn) -> None:
        """End ``turn``: the next submit on its slots may run once the submits this one
        followed are over too (at once if they are). Idempotent."""
        slots, waits, done = turn
        if done.done():
            return
        pending = [tail for tail in waits if not tail.done()]
        if pending:
            later = (slots, pending, done)
            pending[0].add_done_callback(lambda _: self.release(later))
            return
        done.set_result(None)
        tails = self._tails
        for slot in slots:
            if tails.get(slot) is done:
                del tails[slot]

    def busy(self) -> int:
        """How many slots have a submit running or waiting (for tests and inspection)."""
        return len(self._tails)
