"""Resuming a session after a network drop (protocol.md, "Resuming a session").

Two parts:

- ``ResultLog``: a session's recent final frames, bounded by count and bytes,
  so that a submit re-sent after a resume is answered from the log instead of
  running twice; after a resume it also knows which ids were still in flight.
- ``ParkedSessions``: sessions whose connection dropped, kept for
  ``resume_grace`` seconds for their client to come back with the resume
  token (bounded in all and per address), and the tokens of the sessions
  connected here (a resume of one of those is refused: one connection holds a
  session). With a shared store (Redis), each session's record
  (``to_record``) is saved after every submit, before its result is sent, and
  claimed atomically by whichever node the client reconnects to, so a session
  resumes on any node, even after its node died, with every result its client
  saw (``store/sessions.py`` has the fencing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ..app import App
from ..protocol import SubmitId
from ..store.sessions import SessionHeld

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
        # An exact-size copy: orjson's bytes keep a buffer of at least 4 KiB, so a
        # kept 50-byte frame would hold 80 times what the byte bound counts.
        frames[id] = frame = bytes(memoryview(frame))
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
    session.own_state()
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
    nothing is saved). Each session has at most one save in flight; what is
    asked for meanwhile is folded into the next one (one round trip per submit
    at most, fewer under load). ``close`` waits (bounded) for them.
    """

    def __init__(self, settings: Settings, records: SessionRecords | None) -> None:
        self.grace = settings.resume_grace
        self.max_total = settings.max_parked_sessions
        self.max_per_address = settings.max_parked_per_address
        self.lease = settings.resume_node_lease
        # Results wait for their session's record to be saved (Redis store).
        self.durable = not settings.resume_save_after_result
        self.records = records
        self.node = secrets.token_hex(8)
        # Oldest first (dicts keep insertion order), in all and per address.
        self._parked: dict[str, tuple[Session, asyncio.TimerHandle]] = {}
        self._by_address: dict[str, dict[str, None]] = {}
        # Sessions connected here, by resume token.
        self._live: dict[str, Session] = {}
        # Saves wanted (with the result frames waiting for them) and running.
        self._wanted: dict[Session, list[bytes]] = {}
        self._saving: set[Session] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._parked)

    def __contains__(self, token: object) -> bool:
        return token in self._parked

    @property
    def shared(self) -> bool:
        return self.records is not None

    # -- connected sessions ------------------------------------------------------

    def hold(self, session: Session) -> None:
        """``session`` is connected here now (under its current token)."""
        self._live[session.resume_token] = session
        if self.records is not None:
            if self._heartbeat is None:
                self._heartbeat = asyncio.get_running_loop().create_task(self._beat())
            session.on_commit = self.commit if self.durable else self._commit_after

    def holder(self, token: str) -> Session | None:
        """The session connected here under ``token``, if any."""
        return self._live.get(token)

    def release(self, session: Session) -> None:
        self._live.pop(session.resume_token, None)

    async def find(self, token: str) -> tuple[Session | None, dict[str, Any] | None]:
        """The session to resume under ``token``: parked here, or the record of one
        parked on another node (or whose node died), or neither. Raises
        ``SessionHeld`` while a connection holds it, here or on a live node."""
        if not token:
            return None, None
        if token in self._live:
            raise SessionHeld(token)
        entry = self._pop(token)
        if entry is None:
            return None, await self.claim(token)
        session, timer = entry
        timer.cancel()
        if self.records is not None and not await self._claim_own(token):
            # Claimed on another node first: the session lives on there.
            self._spawn(session.close(run_hooks=False))
            return None, None
        return session, None

    async def _claim_own(self, token: str) -> bool:
        """Take back the record of a session parked here; False if another node has."""
        assert self.records is not None
        try:
            claimed = await self.records.claim(
                token, node=self.node, ttl=max(self.grace, 1.0), local=True
            )
        except SessionHeld:
            return False
        except Exception as exc:
            log.warning("could not claim a session parked here (resumed here): %s", exc)
            return True
        return claimed is not None

    # -- parking -----------------------------------------------------------------

    def park(self, session: Session) -> None:
        self.release(session)
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

    async def claim(self, token: str) -> dict[str, Any] | None:
        """The record of a session parked on another node, taken atomically (or None).
        Raises ``SessionHeld`` while a live connection holds it."""
        if self.records is None:
            return None
        try:
            return await self.records.claim(token, node=self.node, ttl=max(self.grace, 1.0))
        except SessionHeld:
            raise
        except Exception as exc:
            log.warning("could not look up a session to resume: %s", exc)
            return None

    # -- saving ------------------------------------------------------------------

    def commit(self, session: Session, frame: bytes | None = None) -> None:
        """Save ``session``'s record, then send ``frame`` (a result it holds back)."""
        wanted = self._wanted.get(session)
        if wanted is None:
            wanted = self._wanted[session] = []
        if frame is not None:
            wanted.append(frame)
        if session not in self._saving:
            self._saving.add(session)
            self._spawn(self._saver(session))

    def _commit_after(self, session: Session, frame: bytes | None = None) -> None:
        """``resume_save_after_result``: send first, save soon after."""
        if frame is not None:
            session.deliver(frame)
        self.commit(session)

    def save_soon(self, session: Session) -> None:
        """Save ``session``'s record in the background."""
        self.commit(session)

    async def saved(self, session: Session, record: dict[str, Any] | None = None) -> None:
        """Save ``session``'s record now (a resumed one's, under its new token;
        ``record``: the claimed one it is about to load)."""
        await self._save(session, record)

    def forget(self, token: str) -> None:
        self._spawn(self._delete(token))

    async def _saver(self, session: Session) -> None:
        try:
            while (frames := self._wanted.pop(session, None)) is not None:
                await self._save(session)
                for frame in frames:
                    session.deliver(frame)
        finally:
            self._saving.discard(session)

    async def _save(self, session: Session, record: dict[str, Any] | None = None) -> None:
        assert self.records is not None
        if session.closed:
            return
        token = session.resume_token
        if record is None:
            record = to_record(session)
        try:
            saved = await self.records.save(
                token, record, self.grace, node=self.node, held=session.attached
            )
        except Exception as exc:
            log.warning("could not save session %s for resume: %s", session.id, exc)
            return
        if not saved:
            # Claimed by another node meanwhile: the session lives on there.
            log.info("session %s was resumed elsewhere", session.id)
            entry = self._pop(token)
            if entry is not None:
                entry[1].cancel()
                self._spawn(session.close(run_hooks=False))

    async def _beat(self) -> None:
        """Keep this node's liveness key (its connected sessions are held) renewed."""
        assert self.records is not None
        while True:
            try:
                await self.records.node_alive(self.node, self.lease)
            except Exception as exc:
                log.warning("could not renew this node's session lease: %s", exc)
            await asyncio.sleep(self.lease / 3)

    # -- ending ------------------------------------------------------------------

    def _expire(self, token: str) -> None:
        entry = self._pop(token)
        if entry is not None:
            self._spawn(self._end(entry[0]))

    async def _end(self, session: Session) -> None:
        # Resumed on another node meanwhile? Then its record is gone: no hook here.
        if self.records is not None and not await self._claim_own(session.resume_token):
            await session.close(run_hooks=False)
            return
        await session.close()

    async def _delete(self, token: str) -> None:
        assert self.records is not None
        with contextlib.suppress(Exception):
            await self.records.delete(token, node=self.node, ttl=max(self.grace, 1.0))

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
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(BaseException):
                await self._heartbeat
