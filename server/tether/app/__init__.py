"""The user-facing registry: what an app's author writes against.

``App`` (functions, topics, hooks, ``app.store``), ``Function`` (one
registered function, read off its signature), ``components`` (what an input
or output is and how a value is checked), ``State`` (session-state slots),
``Context`` (``tether.context()`` inside a submit) and ``Runtime`` (what the
serving server lends the App). Nothing here serves: no sockets, no loop.
"""

from __future__ import annotations

from .app import App
from .context import Context, context
from .function import DEFAULT, Function
from .runtime import Runtime
from .state import State

__all__ = ["DEFAULT", "App", "Context", "Function", "Runtime", "State", "context"]
