"""The store's contract: ``StoreBackend``, where every operation is declared once.

``app.store`` (``facade.Store``) is the handle user code holds; it forwards
each operation to a backend: ``memory.MemoryBackend`` (one process) or
``redis_backend.RedisBackend`` (shared by every node). The signatures and
docs below are the only ones: the backends implement them without repeating
the docs, and the facade takes its operations from here.

Every operation is atomic and maps onto one Redis command or script, so the
in-memory backend and the Redis backend share one interface:

==================  ==================================================
operation           Redis equivalent
==================  ==================================================
get / set / delete  GET / SET (PX with ``ttl``) / DEL
expire              PEXPIRE (on the value, list and leaderboard)
incr                INCRBY, or a double-add script
update(key, fn)     WATCH + GET + MULTI/SET/EXEC, retried
list_append         RPUSH + LTRIM (one script)
list_range          LRANGE
lb_add              ZADD (+ ZREMRANGEBYRANK when ``keep``)
lb_incr             ZSCORE + ZADD (a script: refuses an infinite sum)
lb_top              ZREVRANGE ... WITHSCORES
lb_rank / lb_score  ZREVRANK / ZSCORE
ping                PING
==================  ==================================================

Values are JSON (stored serialised, as Redis would), so a value read from
the store is always the caller's own copy and can never be mutated behind
the lock's back.

Both backends agree exactly, and ``tests/store/test_contract.py`` runs one
contract against each:

- ``incr`` keeps integers integers (signed 64-bit, as Redis) and gives a
  float as soon as either side is a float, with IEEE double arithmetic.
- Leaderboards order by score, highest first; equal scores by member, the
  greater member (by code point, which is UTF-8 byte order) first: the order
  of Redis' ZREVRANGE. ``keep`` drops from the other end of the same order.
- Keys can expire (``set(..., ttl=)``, ``expire``), as in Redis: an expired
  key is gone for every operation. Replacing a value (``set`` without
  ``ttl``, ``update``) clears its TTL; changing one in place (``incr``,
  ``list_append``, ``lb_add``, ``lb_incr``) keeps it; ``delete`` ends it.
- The memory store holds at most ``store_max_keys`` keys (a server setting;
  values, lists and leaderboards each count, expired keys do not): a write
  that would create one more is a ``StoreError`` and changes nothing, while
  writes to existing keys go on. Redis' bound is its own ``maxmemory`` (with
  ``noeviction``, a write past it is refused, also as a ``StoreError``).
- Lists, values and leaderboards are separate key spaces: ``delete`` removes
  all three, and the same name can be a value and a list at once (in Redis,
  one prefix per kind: ``cluster/channels.py``).
- An operation given a ``topic`` publishes there atomically with its change,
  so subscribers see the changes in the order they happened, across nodes.
  ``update`` and ``lb_add`` publish a *value* (the new value, the new top):
  it also becomes the topic's current value, which a new subscriber gets
  first (protocol 8; in Redis it is written by the same script as the
  change). ``list_append`` publishes an item of a stream: not retained.
- Misuse (a wrong type, a count below 1, a NaN score) is a ``StoreError``
  and changes nothing; a backend that cannot be reached raises
  ``StoreUnavailable`` (an operation in flight may or may not have applied).
- What enters is checked where it enters, so nothing stored can make an
  encoding fail later (``checks``): values are JSON with signed 64-bit
  integers, finite floats and at most ``checks.MAX_VALUE_DEPTH`` (128) levels
  of nesting; scores are finite doubles (an int score is kept as the double
  nearest it; ``plain_number`` shows it as an int only up to 2**53).
- **Store writes are side effects: they are not rolled back.** A function that
  writes to the store and then raises gets ``fn_error`` (its session state is
  restored), but every store operation it completed stays applied, as in any
  database without a transaction. Validate before writing.

Session records (a parked session's state, for a resume on another node) are
not data: they have their own interface, ``sessions.SessionRecords``, reached
through ``backend.sessions``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .sessions import SessionRecords

__all__ = ["StoreBackend"]


class StoreBackend(Protocol):
    """The operations a store backend provides; every one is atomic."""

    shared: bool
    """True when several server processes share this backend (Redis)."""

    publisher: Callable[[str, Any, bool], None] | None
    """Set while served (``Store.attach``): how an operation given a ``topic``
    reaches that topic's subscribers, ``publisher(topic, data, retain)`` (a
    backend that publishes through Redis itself ignores it)."""

    sessions: SessionRecords | None
    """Where parked sessions are kept for a resume on any node; None when the
    backend is not shared (sessions then resume on their own node only)."""

    async def get(self, key: str, default: Any = None) -> Any:
        """The value at ``key`` (the caller's own copy), or ``default`` when there is none."""
        ...

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` (JSON-serialisable) at ``key``, replacing what was there.

        With ``ttl`` (seconds, a positive finite number; Redis rounds it up to
        whole milliseconds) the value expires that long from now; without, it
        never expires (a TTL the old value had is cleared, as Redis' SET).
        """
        ...

    async def expire(self, key: str, ttl: float) -> bool:
        """Make the value, the list and the leaderboard named ``key`` expire ``ttl``
        seconds from now (a positive finite number); True if any of them existed.

        A later ``expire`` moves the deadline; ``set`` without ``ttl`` (or
        ``update``) clears the value's, ``delete`` removes the keys at once.
        """
        ...

    async def delete(self, key: str) -> bool:
        """Remove the value, the list and the leaderboard named ``key``; True if any existed."""
        ...

    async def incr(self, key: str, by: int | float = 1) -> int | float:
        """Add ``by`` to the number at ``key`` (0 when there is none); return the sum.

        Integers stay integers (signed 64-bit); a float on either side makes a
        float. A value that is not a number, or a sum out of range, is a
        ``StoreError`` and changes nothing.
        """
        ...

    async def update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        default: Any = None,
        *,
        topic: str | None = None,
        event: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Atomically replace the value at ``key`` with ``fn(value)``; return the new value.

        ``fn`` gets its own copy of the value (``default`` when there is none).
        It must be a quick, pure function of its argument: a distributed
        backend may call it more than once. An exception in ``fn`` propagates
        and changes nothing. With ``topic``, the new value (or ``event(new
        value)``) is published there atomically with the change, and is the
        topic's current value.
        """
        ...

    async def list_append(
        self, key: str, value: Any, maxlen: int | None = None, *, topic: str | None = None
    ) -> int:
        """Append ``value``; keep only the newest ``maxlen`` items; return the new length.

        With ``topic``, ``value`` is published there atomically with the append.
        """
        ...

    async def list_range(self, key: str, start: int = 0, stop: int = -1) -> list[Any]:
        """The items from ``start`` to ``stop``, both included; negative indices count
        from the end (Redis LRANGE). A missing list is empty."""
        ...

    async def lb_add(
        self,
        board: str,
        member: str,
        score: float,
        keep: int | None = None,
        *,
        top: int = 0,
        topic: str | None = None,
    ) -> list[tuple[str, float]]:
        """Set ``member``'s score; with ``keep``, only the best ``keep`` members stay.

        Returns the best ``top`` ``(member, score)`` pairs after the change; with
        ``topic`` (which needs ``top`` >= 1), their scores (a list of numbers,
        best first) are published there atomically with the change, and are the
        topic's current value.
        """
        ...

    async def lb_incr(self, board: str, member: str, by: float = 1) -> float:
        """Add ``by`` to ``member``'s score (0 when absent); return the new score."""
        ...

    async def lb_top(self, board: str, n: int) -> list[tuple[str, float]]:
        """The ``n`` best ``(member, score)`` pairs, highest score first."""
        ...

    async def lb_rank(self, board: str, member: str) -> int | None:
        """0-based rank of ``member`` (0 is the best), or None."""
        ...

    async def lb_score(self, board: str, member: str) -> float | None:
        """``member``'s score, or None."""
        ...

    async def ping(self) -> bool:
        """True when the backend answers (for readiness checks); never raises."""
        ...

    async def close(self) -> None:
        """Release the backend's connections (a later operation would open new ones)."""
        ...
