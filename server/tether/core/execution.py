"""Running one admitted submit: snapshot, call, stream, time out, commit or roll back.

Before the call, every state slot the function reads with ``snapshot=True`` is
copied (``copy_value``); if the function raises, times out or is cancelled,
each slot gets its copy back, so a function that mutated its state in place
and then failed leaves the session exactly as it was. On success the
function's state outputs replace the slots' values, unless the session's state
(every slot the function touched measured again with ``state_size``, the others
as last measured) would then pass ``max_state_bytes``: then the submit gets
``state_too_large`` and is rolled back like a failure.

Generator functions stream: each yield goes to the client as a ``partial``,
and the last one is the result (its state is the one kept).
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Callable
from typing import Any, Protocol

from ..app import Function, State
from ..app.context import Context, SessionView, _current
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
        public = iter(args)
        for slot in function.input_slots:
            if slot is None:
                full.append(next(public))
            else:
                value = session.get(slot)
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
            _restore(session, snapshots)
            raise
        except TimeoutError:
            _restore(session, snapshots)
            return _error(
                id, Code.TIMEOUT, f"{function.name} ran longer than its {function.timeout:g} s"
            )
        except StoreUnavailable as exc:
            _restore(session, snapshots)
            return _error(id, Code.STORE_UNAVAILABLE, str(exc))
        except (BadValue, LocalProtocolError) as exc:
            _restore(session, snapshots)
            return _error(id, Code.FN_ERROR, f"{function.name} returned a bad value: {exc}")
        except Exception as exc:
            _restore(session, snapshots)
            log.warning("%s raised %s: %s", function.name, type(exc).__name__, exc, exc_info=True)
            return _error(id, Code.FN_ERROR, self._describe(function, exc))
        if self.max_state_bytes and function.slots:
            refusal = _over_budget(session, function, new_states, self.max_state_bytes)
            if refusal is not None:
                _restore(session, snapshots)
                return _error(id, Code.STATE_TOO_LARGE, refusal)
        state = session.state
        for slot, value in new_states:
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


def _over_budget(
    session: Host, function: Function, new_states: list[tuple[State, Any]], budget: int
) -> str | None:
    """Why committing ``new_states`` would pass the session's state budget, or None
    (then the sizes just measured are kept for the next submit).

    Every slot the function touched is measured again (it may have changed one in
    place); the others count at their last size, kept as a running total.
    """
    state = session.state
    sizes = session.state_bytes
    total = sum(sizes.values())
    measured: list[tuple[State, int]] = []
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
        size = state_size(value) or 0  # (None: not measurable, not counted)
        total += size - sizes.get(slot, 0)
        measured.append((slot, size))
    if total > budget:
        return (
            f"{function.name} would leave this session's state at {total} bytes, over its "
            f"budget of {budget} (max_state_bytes); the state is unchanged"
        )
    for slot, size in measured:
        sizes[slot] = size
    return None


_ABSENT: Any = object()


def _restore(session: Host, snapshots: list[tuple[State, Any]]) -> None:
    state = session.state
    for slot, value in snapshots:
        state[slot] = value


def _error(id: SubmitId, code: str, message: str) -> Outcome:
    """An error frame, with its code as the submit's outcome."""
    return encode_error(id, code, message), code
