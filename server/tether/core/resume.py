"""Resuming a session after a network drop (protocol.md, "Resuming a session").

Two parts:

- ``ResultLog``: a session's recent final frames, bounded by count and bytes,
  so that a submit re-sent after a resume is answered from the log instead of
  running twice; after a resume it also knows which ids were still in flight.
- ``ParkedSessions``: sessions whose connection dropped, kept for
  ``resume_grace`` seconds for their client to come back with the resume
  token. With a shared store (Redis), each session's record (``to_record``)
  is saved after every submit and claimed atomically by whichever node the
  client reconnects to, so a session resumes on any node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ..app import App
from ..protocol import SubmitId

if TYPE_CHECKING:
    from ..settings import Settings
    from ..store.sessions import SessionRecords
    from .session import Session

__all__ = ["ParkedSessions", "ResultLog", "load_record", "to_record"]

log = logging.getLogger("tether.resume")


class ResultLog:
    """Final frames of a session's recent submits (oldest dropped first)."""

    __slots__ = (
        "_bytes",
        "_in_flight",
        "_max_bytes",
        "_max_count",
        "_replay",
        "frames",
        "replaying",
    )

    def __init__(self, max_count: int, max_bytes: int) -> None:
        self.frames: dict[SubmitId, bytes] = {}
        self._bytes = 0
        self._max_count = max_count
        self._max_bytes = max_bytes
        # Only after a resume: the frames a re-sent id is answered with, and the
        # ids that were in flight when the connection dropped.
        self._replay: dict[SubmitId, bytes] | None = None
        self._in_flight: set[SubmitId] | None = None
        # True while re-sent ids may need answers (checked on every submit).
        self.replaying = False

    def record(self, id: SubmitId, frame: bytes) -> None:
        frames = self.frames
        if id in frames:
            self._bytes -= len(frames.pop(id))
        frames[id] = frame
        self._bytes += len(frame)
        while frames and (len(frames) > self._max_count or self._bytes > self._max_bytes):
            self._bytes -= len(frames.pop(next(iter(frames))))

    def resumed(self, in_flight: set[SubmitId]) -> None:
        """A client came back: answer its re-sent ids from what is logged now."""
        self._replay = dict(self.frames)
        self._in_flight = in_flight
        self.replaying = bool(self._replay or in_flight)

    def answer(self, id: SubmitId) -> bytes | None:
        """A re-sent submit's final frame, if it finished before (answered once)."""
        frame = self._replay.pop(id, None) if self._replay else None
        self.replaying = bool(self._replay or self._in_flight)
        return frame

    def still_running(self, id: SubmitId) -> bool:
        """True (once) for an id that was in flight when the connection dropped."""
        found = bool(self._in_flight) and id in self._in_flight  # type: ignore[operator]
        if found:
            self._in_flight.discard(id)  # type: ignore[union-attr]
        self.replaying = bool(self._replay or self._in_flight)
        return found


def to_record(session: Session) -> dict[str, Any]:
    """What another node needs to resume ``session`` (JSON-able if its state is)."""
    results = session.results.frames if session.results is not None else {}
    return {
        "id": session.id,
        "state": {slot.stable_key: value for slot, value in session.state.items()},
        "results": [[id, frame.decode()] for id, frame in results.items()],
        "topics": sorted(session.topics),
    }


def load_record(session: Session, app: App, record: dict[str, Any]) -> None:
    """Make ``session`` the one ``record`` describes: its state, results and topics."""
    slots = app.slots_by_key()
    for key, value in record.get("state", {}).items():
        slot = slots.get(key)
        if slot is not None:
            session.state[slot] = value
    log_ = session.result_log()
    for id, frame in record.get("results", []):
        log_.record(id, frame.encode())
    log_.resumed(set())
    for topic in record.get("topics", []):
        session.subscribe_server_side(topic)


class ParkedSessions:
    """Sessions awaiting a resume, by resume token; each ends after ``grace`` seconds.

    Bounded: at most ``max_parked_sessions`` in all and ``max_parked_per_address``
    per client address; parking one more ends the oldest (of the address, or of
    all) with its end hooks, so dropped connections never fill the server's
    session limit against live newcomers.

    ``records`` is the shared store's session records (None: one node only,
    nothing is saved). Saves and deletes run in the background; ``close``
    waits (bounded) for them.
    """

    def __init__(self, settings: Settings, records: SessionRecords | None) -> None:
        self.grace = settings.resume_grace
        self.max_total = settings.max_parked_sessions
        self.max_per_address = settings.max_parked_per_address
        self.records = records
        # Oldest first (dicts keep insertion order), in all and per address.
        self._parked: dict[str, tuple[Session, asyncio.TimerHandle]] = {}
        self._by_address: dict[str, dict[str, None]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._parked)

    def __contains__(self, token: object) -> bool:
        return token in self._parked

    @property
    def shared(self) -> bool:
        return self.records is not None

    def park(self, session: Session) -> None:
        session.detach()
        address = session.client or ""
        mine = self._by_address.get(address)
        while mine and len(mine) >= self.max_per_address:
            self.evict(next(iter(mine)))
        while self._parked and len(self._parked) >= self.max_total:
            self.evict(next(iter(self._parked)))
        if self.max_total <= 0 or self.max_per_address <= 0:
            self._spawn(self._end(session))
            return
        token = session.resume_token
        timer = asyncio.get_running_loop().call_later(self.grace, self._expire, token)
        self._parked[token] = (session, timer)
        self._by_address.setdefault(address, {})[token] = None
        if self.records is not None:
            self.save_soon(session)

    def evict(self, token: str | None = None) -> bool:
        """End a parked session now (the oldest when ``token`` is None), hooks run."""
        if token is None:
            if not self._parked:
                return False
            token = next(iter(self._parked))
        entry = self._pop(token)
        if entry is None:
            return False
        entry[1].cancel()
        self.evicted += 1
        self._spawn(self._end(entry[0]))
        return True

    def _pop(self, token: str) -> tuple[Session, asyncio.TimerHandle] | None:
        entry = self._parked.pop(token, None)
        if entry is not None:
            address = entry[0].client or ""
            mine = self._by_address.get(address)
            if mine is not None:
                mine.pop(token, None)
                if not mine:
                    del self._by_address[address]
        return entry

    def take(self, token: str) -> Session | None:
        """The session parked here under ``token``, now no longer parked (or None)."""
        entry = self._pop(token)
        if entry is None:
            return None
        session, timer = entry
        timer.cancel()
        if self.records is not None:
            self.forget(token)
        return session

    async def claim(self, token: str) -> dict[str, Any] | None:
        """The record of a session parked on another node, taken atomically (or None)."""
        if self.records is None:
            return None
        try:
            return await self.records.claim(token)
        except Exception as exc:
            log.warning("could not look up a session to resume: %s", exc)
            return None

    def save_soon(self, session: Session) -> None:
        """Save ``session``'s record in the background (after every submit it finishes)."""
        self._spawn(self._save(session))

    def forget(self, token: str) -> None:
        self._spawn(self._delete(token))

    def _expire(self, token: str) -> None:
        entry = self._pop(token)
        if entry is not None:
            self._spawn(self._end(entry[0]))

    async def _end(self, session: Session) -> None:
        # Resumed on another node meanwhile? Then its record is gone: no hook here.
        if self.records is not None and await self.claim(session.resume_token) is None:
            await session.close(run_hooks=False)
            return
        await session.close()

    async def _save(self, session: Session) -> None:
        assert self.records is not None
        try:
            await self.records.save(session.resume_token, to_record(session), self.grace)
        except Exception as exc:
            log.warning("could not save session %s for resume: %s", session.id, exc)

    async def _delete(self, token: str) -> None:
        assert self.records is not None
        with contextlib.suppress(Exception):
            await self.records.delete(token)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self, wait: float) -> None:
        """End every parked session now (the server stops), then wait up to ``wait``
        seconds for background saves and deletes."""
        for token in list(self._parked):
            entry = self._pop(token)
            if entry is not None:
                entry[1].cancel()
                await entry[0].close()
        if self._background:
            await asyncio.wait(list(self._background), timeout=wait)
