"""Serving over aiohttp: the only modules of tether that import aiohttp.

``server.py`` wires a ``Server`` (routes, the runtime lent to the App,
lifecycle); ``websocket.py`` is one connection's handler and read loop;
``outbox.py`` its outgoing frames and bounded send queue; ``keepalive.py`` the
sweep that pings and closes idle connections; ``parking.py`` sessions awaiting
a resume; ``routes.py`` the HTTP endpoints; ``tuning.py`` process settings
shared by the CLI, the load tester and bench (open-files limit, GC, loop).
"""

from __future__ import annotations

from .server import Server, serve

__all__ = ["Server", "serve"]
