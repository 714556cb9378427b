"""The client stacks that carry a load test's built-in scenarios, by ``--client`` name.

- ``picows``: ``PicowsConnection`` (``pip install tether[fast]``), the cheaper
  per submit, so the default when picows is installed;
- ``aiohttp``: ``LeanConnection``, always there (aiohttp is a dependency);
- ``auto``: picows if it can be imported, else aiohttp.

Custom scenario files run on ``tether.Client`` (websockets) whatever ``--client``
says; their reports name that stack, ``websockets``.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final, Protocol

from ..protocol import ServerMessage
from .replies import Connection

__all__ = ["CLIENTS", "CUSTOM_STACK", "Opener", "open_stack", "picows_available", "resolve_client"]

CLIENTS: Final = ("auto", "picows", "aiohttp")
CUSTOM_STACK: Final = "websockets"


class Opener(Protocol):
    """Opens one connection of a stack: ``await opener(url, on_frame, on_violation, first_id)``."""

    def __call__(
        self,
        url: str,
        on_frame: Callable[[ServerMessage], None],
        on_violation: Callable[[str], None],
        first_id: int,
    ) -> Awaitable[Connection]: ...


def picows_available() -> bool:
    try:
        return importlib.util.find_spec("picows") is not None
    except (ImportError, ValueError):
        return False


def resolve_client(choice: str) -> str:
    """The stack ``--client choice`` runs on; ``ValueError`` when it cannot."""
    if choice == "auto":
        return "picows" if picows_available() else "aiohttp"
    if choice == "picows" and not picows_available():
        raise ValueError(
            "--client picows needs picows, which is not installed "
            "(pip install 'tether[fast]'), or use --client aiohttp"
        )
    if choice not in CLIENTS:
        raise ValueError(f"unknown client stack {choice!r}: use one of {', '.join(CLIENTS)}")
    return choice


@contextlib.asynccontextmanager
async def open_stack(stack: str) -> AsyncIterator[Opener]:
    """What opens connections of ``stack`` (``resolve_client`` 's answer) while in use."""
    if resolve_client(stack) == "picows":
        from .picows_connection import PicowsConnection

        yield PicowsConnection.open
        return
    import aiohttp

    from .connection import LeanConnection

    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:

        def open_lean(
            url: str,
            on_frame: Callable[[ServerMessage], None],
            on_violation: Callable[[str], None],
            first_id: int,
        ) -> Awaitable[Connection]:
            return LeanConnection.open(http, url, on_frame, on_violation, first_id)

        yield open_lean
