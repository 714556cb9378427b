"""tether: serve stateful Python functions to browsers and scripts over one WebSocket.

Session state lives with each connection; global state lives in ``app.store``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .app import DEFAULT, App, Context, Function, State, context
from .errors import (
    AppError,
    BadValue,
    Refused,
    SettingsError,
    StoreError,
    StoreUnavailable,
    TetherError,
    TetherException,
)
from .protocol.codes import PROTOCOL_VERSION
from .settings import Settings
from .store import Store

if TYPE_CHECKING:
    from .client import Call, Client, SyncClient, connect, connect_sync
    from .server import Server, serve

__all__ = [
    "DEFAULT",
    "PROTOCOL_VERSION",
    "App",
    "AppError",
    "BadValue",
    "Call",
    "Client",
    "Context",
    "Function",
    "Refused",
    "Server",
    "Settings",
    "SettingsError",
    "State",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "SyncClient",
    "TetherError",
    "TetherException",
    "connect",
    "connect_sync",
    "context",
    "serve",
]

__version__ = "0.1.0"

# The client and the server pull in websockets / aiohttp; import them only
# when used, so that `import tether` stays fast for function modules.
_LAZY = {
    "Call": "client",
    "Client": "client",
    "SyncClient": "client",
    "connect": "client",
    "connect_sync": "client",
    "Server": "server",
    "serve": "server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tether' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{module}", __name__), name)
