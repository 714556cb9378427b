"""Running one admitted submit: journal, call, stream, time out, commit or roll back.

Every state slot the function reads with ``snapshot=True`` is journaled
(app/journal.py): its value is kept as tracked lists and dicts that log how to
undo each mutation, so a call costs what it changes, not what the state holds.
If the function raises, times out or is cancelled, the journal is rolled back,
so a function that mutated its state in place and then failed leaves the
session exactly as it was; a sync function that may still run in its thread
(timed out, cancelled) keeps the objects it has, and the session gets a copy
of the rolled-back state instead. A slot whose value cannot be journaled (not
JSON lists, dicts and scalars) or declared ``snapshot="copy"`` is copied before
the call (``copy_value``) and gets its copy back.

On success the function's state outputs replace the slots' values, unless the
session's state would then pass ``max_state_bytes``: then the submit gets
``state_too_large`` and is rolled back like a failure. A journaled slot's size
is kept up to date from the bytes its mutations added and removed, and measured
again in full (``state_size``) once it has grown by an eighth since it last
was, or before a refusal: O(1) per submit amortised, and never off by more than
what an eighth of the state's growth could hide. Other slots the function
touched are measured again in full.

Generator functions stream: each yield goes to the client as a ``partial``,
and the last one is the result (its state is the one kept).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import Callable
from typing import Any, Protocol

from ..app import Function, State
from ..app.context import Context, SessionView, _current
from ..app.journal import Journal, Untrackable, adopt, is_tracked
from ..app.state import copy_value, state_size
from ..errors import BadValue, LocalProtocolError, StoreUnavailable
from ..protocol import Code, DeltaEncoder, SubmitId, encode_error, encode_outputs
from .runner import Runner

__all__ = ["Executor", "Outcome"]

log = logging.getLogger("tether.session")

Outcome = tuple[bytes, str]
"""The frame that answers a submit, and its outcome: ``ok`` or the error code."""


class Host(SessionView, Protocol):
    """What the executor needs of the session it runs a submit for."""

    state: dict[State, Any]
    state_bytes: dict[State, int]
    deltas: DeltaEncoder | None

    def get(self, slot: State) -> Any: ...
    def send(self, frame: bytes) -> None: ...


class Executor:
    """Runs submits for every session of a server (one per server)."""

    __slots__ = ("debug", "max_state_bytes", "runner")

    def __init__(self, runner: Runner, debug: bool = False, max_state_bytes: int = 0) -> None:
        self.runner = runner
        self.debug = debug
        self.max_state_bytes = max_state_bytes  # 0: no budget

    async def execute(
        self, session: Host, id: SubmitId, function: Function, args: list[Any]
    ) -> Outcome:
        """Run one submit; return its answer. Commits or rolls back the session's state.

        Raises ``CancelledError`` (after rolling back) when the submit is cancelled.
        """
        full: list[Any] = []
        snapshots: list[tuple[State, Any]] = []
        journals: list[tuple[State, Journal]] = []
        public = iter(args)
        for slot in function.input_slots:
            if slot is None:
                full.append(next(public))
                continue
            value = session.get(slot)
            if slot.snapshot is True:
                journal = _journal(session, slot, value)
                if journal is not None:
                    journals.append((slot, journal))
                    full.append(session.state[slot])
                    continue
            full.append(value)
            if slot.snapshot:
                snapshots.append((slot, copy_value(value)))
        _current.set(Context(session, id))
        try:
            call = (
                self._stream(session, id, function, full)
                if function.streams
                else self.runner.call(function, full)
            )
            if function.timeout is None:
                returned = await call
            else:
                async with asyncio.timeout(function.timeout):
                    returned = await call
            outputs, new_states = returned if function.streams else function.split_outputs(returned)
            frame = encode_outputs(
                session.deltas, id, function.name, function.public_outputs, outputs, partial=False
            )
        except asyncio.CancelledError:
            # A sync function may still be running in its thread; it keeps the
            # object it was given, while the session gets the snapshot back.
            _restore(session, snapshots, journals, _orphans(function))
            raise
        except TimeoutError:
            _restore(session, snapshots, journals, _orphans(function))
            return _error(
                id, Code.TIMEOUT, f"{function.name} ran longer than its {function.timeout:g} s"
            )
        except StoreUnavailable as exc:
            _restore(session, snapshots, journals)
            return _error(id, Code.STORE_UNAVAILABLE, str(exc))
        except (BadValue, LocalProtocolError) as exc:
            _restore(session, snapshots, journals)
            # One line for the app's author (the caller gets the same words): what the
            # function returned is wrong, so a traceback would only show tether's frames.
            message = f"{function.name} returned a bad value: {exc}"
            log.warning("%s", message)
            return _error(id, Code.FN_ERROR, message)
        except Exception as exc:
            _restore(session, snapshots, journals)
            log.warning("%s raised %s: %s", function.name, type(exc).__name__, exc, exc_info=True)
            return _error(id, Code.FN_ERROR, self._describe(function, exc))
        if self.max_state_bytes and function.slots:
            refusal = _over_budget(session, function, new_states, journals, self.max_state_bytes)
            if refusal is not None:
                _restore(session, snapshots, journals)
                return _error(id, Code.STATE_TOO_LARGE, refusal)
        for _, journal in journals:
            journal.commit()
        state = session.state
        for slot, value in new_states:
            old: Any = state.get(slot)
            if value is not old and is_tracked(old) and not old._j.broken:
                # A new value: made tracked now, reusing the old one's unchanged parts.
                with contextlib.suppress(Untrackable, RecursionError):
                    value = adopt(value, old._j)
            state[slot] = value
        return frame, "ok"

    async def _stream(
        self, session: Host, id: SubmitId, function: Function, full: list[Any]
    ) -> tuple[list[Any], list[tuple[State, Any]]]:
        """Send a partial per yield; the last yield is the result (and its state is kept)."""
        last: tuple[list[Any], list[tuple[State, Any]]] | None = None
        steps = self.runner.stream(function, full)
        send: Callable[[bytes], None] = session.send
        try:
            async for item in steps:
                last = function.split_outputs(item)
                send(
                    encode_outputs(
                        session.deltas,
                        id,
                        function.name,
                        function.public_outputs,
                        last[0],
                        partial=True,
                    )
                )
        finally:
            await steps.aclose()  # type: ignore[attr-defined]
        if last is None:
            raise BadValue(f"{function.name} finished without yielding a value")
        return last

    def _describe(self, function: Function, exc: Exception) -> str:
        text = f"{function.name} raised {type(exc).__name__}: {exc}"
        if self.debug:
            text += "\n" + "".join(traceback.format_exception(exc))
        return text


def _journal(session: Host, slot: State, value: Any) -> Journal | None:
    """The journal of ``slot``, begun for a call (its value made tracked first if it is
    not yet); None when the value cannot be journaled (then it is copied)."""
    if is_tracked(value) and value._j.begin():
        return value._j  # type: ignore[no-any-return]
    journal = Journal()
    try:
        tracked = adopt(value, journal, copy=True)
    except (Untrackable, RecursionError):
        return None
    journal.exact = session.state_bytes.get(slot, 0)
    session.state[slot] = tracked
    journal.begin()
    return journal


def _orphans(function: Function) -> bool:
    """Whether a call of ``function`` ended early (timeout, cancel) may still run: a sync
    function's thread cannot be stopped."""
    return not (function.is_async or function.kind == "agen")


def _restore(
    session: Host,
    snapshots: list[tuple[State, Any]],
    journals: list[tuple[State, Journal]],
    orphaned: bool = False,
) -> None:
    """Put every slot back as it was before the call. ``orphaned``: the call may still
    run (a sync function's thread), so the session gets copies of the rolled-back
    values and the call keeps the objects it has."""
    state = session.state
    for slot, value in snapshots:
        state[slot] = value
    for slot, journal in journals:
        if orphaned:
            state[slot] = journal.abandon(state[slot])
        else:
            journal.rollback()


_SLACK = 16384  # bytes a journaled slot may grow by before it is measured again in full


def _over_budget(
    session: Host,
    function: Function,
    new_states: list[tuple[State, Any]],
    journals: list[tuple[State, Journal]],
    budget: int,
) -> str | None:
    """Why committing ``new_states`` would pass the session's state budget, or None
    (then the sizes just found are kept for the next submit).

    A journaled slot that keeps its value is counted from its journal (what the call
    added and removed), and measured again in full once it has grown by more than an
    eighth (or ``_SLACK``) since it last was, or when the total would pass the budget;
    every other slot the function touched is measured again; the others count at
    their last size, kept as a running total.
    """
    state = session.state
    sizes = session.state_bytes
    if (
        len(journals) == 1
        and len(function.slots) == 1
        and _one_slot_fits(session, function, new_states, journals[0], budget)
    ):
        return None
    total = sum(sizes.values())
    kept = {slot: journal for slot, journal in journals}
    measured: list[tuple[State, int, Journal | None]] = []
    estimated: list[tuple[State, Journal, int]] = []
    for slot in function.slots:
        value = _ABSENT
        for new_slot, new_value in new_states:
            if new_slot is slot:
                value = new_value
                break
        else:
            value = state.get(slot, _ABSENT)  # read, perhaps changed in place
        if value is _ABSENT:
            continue
        journal = kept.get(slot)
        old: Any = state.get(slot)
        if journal is not None and value is old and not journal.broken:
            grown, shrunk = journal.pending()
            if not journal.broken:
                size = sizes.get(slot, 0) + grown - shrunk
                total += size - sizes.get(slot, 0)
                estimated.append((slot, journal, journal.gross + grown))
                measured.append((slot, size, None))
                continue
        size = state_size(value) or 0  # (None: not measurable, not counted)
        total += size - sizes.get(slot, 0)
        measured.append((slot, size, old._j if is_tracked(old) else None))
    for slot, journal, gross in estimated:
        if total > budget or gross > max(journal.exact >> 3, _SLACK):
            exact = state_size(state[slot]) or 0
            for i, (s, size, _) in enumerate(measured):
                if s is slot:
                    total += exact - size
                    measured[i] = (slot, exact, journal)
    if total > budget:
        return (
            f"{function.name} would leave this session's state at {total} bytes, over its "
            f"budget of {budget} (max_state_bytes); the state is unchanged"
        )
    for _, journal, gross in estimated:
        journal.gross = gross  # (zeroed below if it was just measured)
    for slot, size, remeasured in measured:
        sizes[slot] = size
        if remeasured is not None:
            remeasured.exact = size
            remeasured.gross = 0
    return None


def _one_slot_fits(
    session: Host,
    function: Function,
    new_states: list[tuple[State, Any]],
    journaled: tuple[State, Journal],
    budget: int,
) -> bool:
    """``_over_budget``'s common case, a function with one slot (a chat's history) that
    is journaled and keeps its value (changed in place or returned as it is): True
    when it is within the budget and needs no full measure (its size then kept), as
    the general path would find; False when that path has to decide."""
    slot, journal = journaled
    state = session.state
    value = state.get(slot)
    if slot is not function.slots[0] or journal.broken:
        return False
    if new_states and (len(new_states) != 1 or new_states[0][1] is not value):
        return False
    grown, shrunk = journal.pending()
    sizes = session.state_bytes
    before = sizes.get(slot, 0)
    size = before + grown - shrunk
    gross = journal.gross + grown
    if journal.broken or gross > max(journal.exact >> 3, _SLACK):
        return False
    if sum(sizes.values()) + size - before > budget:
        return False
    journal.gross = gross
    sizes[slot] = size
    return True


_ABSENT: Any = object()


def _error(id: SubmitId, code: str, message: str) -> Outcome:
    """An error frame, with its code as the submit's outcome."""
    return encode_error(id, code, message), code
