"""tether: serve stateful Python functions to browsers and scripts over one WebSocket.

Session state lives with each connection; global state lives in ``app.store``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .app import DEFAULT, App, AppError, Function, Refused
from .context import Context, context
from .protocol import PROTOCOL_VERSION
from .settings import Settings, SettingsError
from .state import State
from .store import Store, StoreError, StoreUnavailable

if TYPE_CHECKING:
    from .client import Client, SyncClient, TetherError, connect, connect_sync
    from .transport import Server, serve

__all__ = [
    "DEFAULT",
    "PROTOCOL_VERSION",
    "App",
    "AppError",
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
    "TetherError": "client",
    "connect": "client",
    "connect_sync": "client",
    "Server": "transport",
    "serve": "transport",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tether' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{module}", __name__), name)
