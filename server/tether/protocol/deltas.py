"""Output deltas: O(1) wire cost per chat turn (protocol.md, "Output deltas").

A connection that opts in receives every output whose component is in
``DELTA_COMPONENTS`` (``chatbot``) as ``{"keep": K, "append": [...]}``: the first
K items of the previous value it received for the same function and output
position, followed by ``append``. Every other output is sent whole, so both
sides decide by the output's declared component (the welcome's manifest),
never by the shape of a value: a ``json`` output may well return
``{"keep": 0, "append": [1]}``.

The encoder keeps, per (function, output), the encoded items last sent, so it
finds the common prefix even when user code mutated the list in place. That
comparison encodes every item: O(n) per turn. When the value is the same list
as last time and can say what changed in it since (a journaled state list,
app/journal.py: ``delta_since(clock)`` gives the lowest index that may differ,
or None), only the items from there on are encoded: O(1) per chat turn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ..errors import RemoteProtocolError
from .codes import DELTA_COMPONENTS, Code
from .messages import SubmitId
from .server import encode_partial, encode_result

__all__ = ["DeltaDecoder", "DeltaEncoder", "encode_outputs"]


class _Sent:
    """What one output last sent: its items' encodings, the list itself and when."""

    __slots__ = ("clock", "items", "value")

    def __init__(self, items: list[bytes], value: Any, clock: int | None) -> None:
        self.items = items
        self.value = value
        self.clock = clock


class DeltaEncoder:
    """Server side, one per connection that opted in."""

    __slots__ = ("_sent",)

    def __init__(self) -> None:
        self._sent: dict[tuple[str, int], _Sent] = {}

    def prepare(self, fn: str, index: int, value: list[Any]) -> tuple[dict[str, Any], Any]:
        """The delta for ``value``, and what to ``commit`` once it is really sent."""
        previous = self._sent.get((fn, index))
        since = getattr(value, "delta_since", None)
        clock = value.delta_clock() if since is not None else None  # type: ignore[attr-defined]
        if previous is not None and since is not None and previous.value is value:
            low = since(previous.clock)
            if low is not None:
                start = keep = min(low, len(previous.items))
                tail = [orjson.dumps(item) for item in value[start:]]
                old = previous.items
                limit = min(len(old), len(value))
                while keep < limit and old[keep] == tail[keep - start]:
                    keep += 1  # changed back (a rollback), or changed to what it was
                pending = (start, tail, value, clock)
                return {"keep": keep, "append": value[keep:]}, pending
        items = [orjson.dumps(item) for item in value]
        old = previous.items if previous is not None else []
        keep = 0
        limit = min(len(old), len(items))
        while keep < limit and old[keep] == items[keep]:
            keep += 1
        return {"keep": keep, "append": value[keep:]}, (0, items, value, clock)

    def commit(self, fn: str, index: int, pending: Any) -> None:
        start, tail, value, clock = pending
        previous = self._sent.get((fn, index))
        if start and previous is not None:
            del previous.items[start:]
            previous.items.extend(tail)
            previous.clock = clock
        else:
            self._sent[(fn, index)] = _Sent(tail, value if clock is not None else None, clock)


def encode_outputs(
    deltas: DeltaEncoder | None,
    id: SubmitId,
    fn: str,
    components: Sequence[str],
    outputs: list[Any],
    *,
    partial: bool,
) -> bytes:
    """The ``result`` (or ``partial``) frame of ``outputs``, with the outputs of delta
    components as deltas when the connection opted in (``deltas`` is its encoder).

    The encoder remembers what it sent only once the frame exists, so a frame that
    fails to encode leaves it as it was.
    """
    encode = encode_partial if partial else encode_result
    if deltas is None or DELTA_COMPONENTS.isdisjoint(components):
        return encode(id, outputs)
    wire = list(outputs)
    pending = []
    for i, component in enumerate(components):
        if component in DELTA_COMPONENTS:
            wire[i], items = deltas.prepare(fn, i, outputs[i])
            pending.append((i, items))
    frame = encode(id, wire)
    for i, items in pending:
        deltas.commit(fn, i, items)
    return frame


class DeltaDecoder:
    """Client side: rebuilds full values from deltas, by the manifest's components.

    ``outputs`` maps each function to its public output components (the
    welcome's ``functions[].outputs``; ``Welcome.outputs()``).
    """

    __slots__ = ("_delta_positions", "_values")

    def __init__(self, outputs: Mapping[str, Sequence[str]]) -> None:
        self._delta_positions = {
            fn: tuple(i for i, c in enumerate(components) if c in DELTA_COMPONENTS)
            for fn, components in outputs.items()
        }
        self._values: dict[tuple[str, int], list[Any]] = {}

    def decode(self, fn: str, data: list[Any]) -> list[Any]:
        """The full outputs of one ``result`` or ``partial`` of ``fn``."""
        positions = self._delta_positions.get(fn)
        if not positions:
            return data
        full = list(data)
        for i in positions:
            if i < len(full):
                full[i] = self._apply(fn, i, full[i])
        return full

    def _apply(self, fn: str, index: int, delta: Any) -> list[Any]:
        if type(delta) is not dict or type(delta.get("append")) is not list:
            raise RemoteProtocolError(
                Code.BAD_MESSAGE, f"output {index} of {fn} should be a delta, got {delta!r:.80}"
            )
        keep = delta.get("keep")
        previous = self._values.get((fn, index), [])
        if type(keep) is not int or not 0 <= keep <= len(previous):
            raise RemoteProtocolError(
                Code.BAD_MESSAGE,
                f"a delta for {fn}[{index}] keeps {keep!r} of {len(previous)} items",
            )
        value = previous[:keep] + delta["append"]
        self._values[(fn, index)] = value
        return list(value)
