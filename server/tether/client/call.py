"""One submit in flight on a client connection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..protocol import encode_cancel

if TYPE_CHECKING:
    from .aio import Client

__all__ = ["Call", "unwrap"]


class Call:
    """One submit in flight: await ``result()``, or ``cancel()`` it."""

    __slots__ = ("_client", "fn", "frame", "future", "id", "on_partial", "on_queued", "position")

    def __init__(
        self,
        client: Client,
        id: Any,
        fn: str,
        on_partial: Callable[[list[Any]], Any] | None,
        on_queued: Callable[[int], Any] | None,
    ) -> None:
        self._client = client
        self.id = id
        self.fn = fn
        self.future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.on_partial = on_partial
        self.on_queued = on_queued
        self.position: int | None = None  # while queued: 1-based position
        self.frame: bytes | None = None  # the submit as sent (re-sent after a resume)

    async def result(self) -> list[Any]:
        """The ``data`` list of the result; raises ``TetherError`` on an error reply."""
        return await self.future

    async def cancel(self) -> None:
        """Ask the server to cancel; ``result()`` then raises ``TetherError('cancelled')``
        (unless the result was already on its way)."""
        await self._client._send(encode_cancel(self.id))


def unwrap(outputs: list[Any]) -> Any:
    return outputs[0] if len(outputs) == 1 else tuple(outputs)
