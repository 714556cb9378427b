"""Every exception tether raises, under one root: ``TetherException``.

This module imports nothing else of tether, so any layer may raise these.
The tree, by who is at fault:

- the app's author: ``AppError`` (a function or app declared wrongly, raised at
  registration), ``SettingsError`` (a limit that cannot be used);
- the peer: ``RemoteProtocolError`` (a frame the protocol does not allow; it
  carries the error code to answer with), ``BadValue`` (an input that does not
  fit its component);
- tether itself: ``LocalProtocolError`` (we were about to send something the
  protocol does not allow, e.g. outputs that are not JSON);
- the moment: ``QueueFull``, ``StoreUnavailable``, ``Refused`` (an
  authentication hook's answer);
- the client's view of a failed call: ``TetherError`` with the protocol's code
  (including the client-only codes ``connection_closed`` and ``session_lost``).

Some also derive from the built-in exception a caller would naturally catch
(``AppError`` is a ``TypeError``, ``BadValue`` and ``SettingsError`` are
``ValueError`` s), so code written against earlier releases keeps working.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AppError",
    "BadValue",
    "LocalProtocolError",
    "ProtocolError",
    "QueueFull",
    "Refused",
    "RemoteProtocolError",
    "SettingsError",
    "StoreError",
    "StoreUnavailable",
    "TetherError",
    "TetherException",
]


class TetherException(Exception):
    """The root of every exception tether raises."""


class AppError(TetherException, TypeError):
    """An app or function was declared wrongly (raised at registration, not at run time)."""


class SettingsError(TetherException, ValueError):
    """A setting has a value that cannot be used."""


class ProtocolError(TetherException):
    """Something broke the wire protocol (protocol.md)."""


class LocalProtocolError(ProtocolError):
    """Our side was about to send something the protocol does not allow (our bug, or
    a function's output that cannot be sent)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow.

    ``code`` is the protocol error code to answer with (``bad_json``,
    ``bad_message``), ``id`` the offending submit's id when it was readable.
    The server answers with ``protocol.encode_error(exc.id, exc.code,
    exc.message)`` and keeps the connection open.
    """

    def __init__(self, code: str, message: str, id: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.id = id


class BadValue(TetherException, ValueError):
    """A value does not fit its component (an input, or a function's output)."""


class Refused(TetherException):
    """Raised by an ``authenticate`` hook to refuse a handshake with an HTTP status."""

    def __init__(self, status: int = 401, reason: str = "authentication required") -> None:
        if status not in (401, 403):
            raise ValueError("Refused takes status 401 or 403")
        super().__init__(reason)
        self.status = status
        self.reason = reason


class QueueFull(TetherException):
    """A function's queue is at its bound (answered with ``queue_full``)."""


class StoreError(TetherException):
    """A store operation was used wrongly (wrong type at a key, misuse from a thread)."""


class StoreUnavailable(StoreError):
    """The store's server cannot be reached (refused, reset or timed out).

    The operation may or may not have been applied when the connection broke
    while it was in flight.
    """


class TetherError(TetherException):
    """A call made through the client failed: ``code`` is the protocol's error code
    (protocol.md, "Error codes"), ``message`` says why, ``id`` is the submit's id."""

    def __init__(self, code: str, message: str, id: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.id = id
