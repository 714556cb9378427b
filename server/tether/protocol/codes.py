"""The protocol's numbers and names: its version, error codes, close codes, components.

protocol.md is the contract; each table there has its twin here.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Final

__all__ = ["DELTA_COMPONENTS", "PROTOCOL_VERSION", "Close", "Code"]

PROTOCOL_VERSION: Final = 9
"""The version of protocol.md this package speaks (the welcome's ``protocol``)."""

DELTA_COMPONENTS: Final = frozenset({"chatbot"})
"""Output components sent as deltas to a connection that opted in (``?deltas=1``)."""


class Code(StrEnum):
    """Error codes carried by ``{"type": "error"}`` replies (protocol.md, "Error codes")."""

    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    UNKNOWN_FN = "unknown_fn"
    BAD_ARGUMENTS = "bad_arguments"
    FN_ERROR = "fn_error"
    TOO_MANY_PENDING = "too_many_pending"
    DUPLICATE_ID = "duplicate_id"
    SHUTTING_DOWN = "shutting_down"
    INTERNAL = "internal"
    QUEUE_FULL = "queue_full"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    FORBIDDEN_TOPIC = "forbidden_topic"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    RATE_LIMITED = "rate_limited"
    STORE_UNAVAILABLE = "store_unavailable"
    STATE_TOO_LARGE = "state_too_large"
    SESSION_HELD = "session_held"
    # Never on the wire: what the Python client raises when the connection is gone,
    # or when it came back as a new session (the old one expired meanwhile).
    CONNECTION_CLOSED = "connection_closed"
    SESSION_LOST = "session_lost"


class Close(IntEnum):
    """WebSocket close codes the server uses (protocol.md, "Close codes")."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    INVALID_TEXT = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    IDLE = 4001
    SLOW_CONSUMER = 4008
