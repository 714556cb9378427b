"""Output deltas: O(1) wire cost per chat turn (sans I/O; protocol.md, "Output deltas").

A connection that opts in receives a ``chatbot`` output as
``{"keep": K, "append": [...]}``: the first K items of the previous value
it received for the same function and output, followed by ``append``.
The encoder keeps, per (function, output), the encoded items last sent, so
it can find the common prefix even when user code mutated the list in place.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["DeltaDecoder", "DeltaEncoder", "is_delta"]


class DeltaEncoder:
    """Server side, one per connection that opted in."""

    __slots__ = ("_sent",)

    def __init__(self) -> None:
        self._sent: dict[tuple[str, int], list[bytes]] = {}

    def prepare(self, fn: str, index: int, value: list[Any]) -> tuple[dict[str, Any], list[bytes]]:
        """The delta for ``value``, and what to ``commit`` once it is really sent."""
        items = [orjson.dumps(item) for item in value]
        previous = self._sent.get((fn, index), [])
        keep = 0
        limit = min(len(previous), len(items))
        while keep < limit and previous[keep] == items[keep]:
            keep += 1
        return {"keep": keep, "append": value[keep:]}, items

    def commit(self, fn: str, index: int, items: list[bytes]) -> None:
        self._sent[(fn, index)] = items

    def encode(self, fn: str, index: int, value: list[Any]) -> dict[str, Any]:
        delta, items = self.prepare(fn, index, value)
        self.commit(fn, index, items)
        return delta


def is_delta(value: Any) -> bool:
    return type(value) is dict and "keep" in value and "append" in value


class DeltaDecoder:
    """Client side: rebuilds full values from deltas."""

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: dict[tuple[str, int], list[Any]] = {}

    def decode(self, fn: str, index: int, value: Any) -> Any:
        if not is_delta(value):
            return value
        keep = value["keep"]
        previous = self._values.get((fn, index), [])
        if type(keep) is not int or not 0 <= keep <= len(previous):
            raise ValueError(f"delta for {fn}[{index}] keeps {keep!r} of {len(previous)} items")
        full = previous[:keep] + list(value["append"])
        self._values[(fn, index)] = full
        return list(full)
