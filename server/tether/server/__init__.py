"""Serving over aiohttp: the only modules of tether that import aiohttp.

``server.py`` wires a ``Server`` (the runtime lent to the App, lifecycle,
drain); ``websocket.py`` is one connection's handler and read loop;
``outbox.py`` its outgoing frames and bounded send queue; ``keepalive.py`` the
sweep that pings and closes silent connections; ``routes.py`` the HTTP
endpoints and the handshake's admission; ``tuning.py`` process settings
shared by the CLI, the load tester and bench (open-files limit, GC, loop
factory).

``Server`` and ``serve`` are imported on first use, so that ``tuning`` can be
used without loading aiohttp's server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import Server, serve

__all__ = ["Server", "serve"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module 'tether.server' has no attribute {name!r}")
