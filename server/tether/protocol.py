"""The tether wire protocol, sans I/O: bytes in, typed messages out, and back.

Nothing here touches a socket or an event loop. ``decode_client`` turns one
text frame from a client into a frozen message dataclass or raises
``RemoteProtocolError`` carrying the error reply to send; the ``encode_*``
functions build the server's frames. ``protocol.md`` is the contract this
module implements; change one and you change the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

__all__ = [
    "PROTOCOL_VERSION",
    "Cancel",
    "ClientMessage",
    "Close",
    "Code",
    "LocalProtocolError",
    "Ping",
    "ProtocolError",
    "RemoteProtocolError",
    "Submit",
    "Subscribe",
    "Unsubscribe",
    "decode_client",
    "encode_error",
    "encode_event",
    "encode_partial",
    "encode_pong",
    "encode_queued",
    "encode_result",
    "encode_started",
    "encode_subscribed",
    "encode_welcome",
]

PROTOCOL_VERSION: Final = 6

SubmitId = str | int


class Code:
    """Error codes carried by ``{"type": "error"}`` replies."""

    BAD_JSON: Final = "bad_json"
    BAD_MESSAGE: Final = "bad_message"
    UNKNOWN_FN: Final = "unknown_fn"
    BAD_ARGUMENTS: Final = "bad_arguments"
    FN_ERROR: Final = "fn_error"
    TOO_MANY_PENDING: Final = "too_many_pending"
    DUPLICATE_ID: Final = "duplicate_id"
    SHUTTING_DOWN: Final = "shutting_down"
    INTERNAL: Final = "internal"
    QUEUE_FULL: Final = "queue_full"
    CANCELLED: Final = "cancelled"
    TIMEOUT: Final = "timeout"
    FORBIDDEN_TOPIC: Final = "forbidden_topic"
    TOO_MANY_SUBSCRIPTIONS: Final = "too_many_subscriptions"
    RATE_LIMITED: Final = "rate_limited"
    STORE_UNAVAILABLE: Final = "store_unavailable"


class Close:
    """WebSocket close codes the server uses (see protocol.md)."""

    NORMAL: Final = 1000
    GOING_AWAY: Final = 1001
    INVALID_TEXT: Final = 1007
    POLICY_VIOLATION: Final = 1008
    MESSAGE_TOO_BIG: Final = 1009
    INTERNAL_ERROR: Final = 1011
    SLOW_CONSUMER: Final = 4008
    IDLE: Final = 4001


class ProtocolError(Exception):
    """Base class of protocol errors."""


class LocalProtocolError(ProtocolError):
    """The server tried to produce something the protocol does not allow (our bug)."""


class RemoteProtocolError(ProtocolError):
    """The client sent something the protocol does not allow.

    ``reply()`` is the error frame to send back; the connection stays open.
    """

    def __init__(self, code: str, message: str, id: SubmitId | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.id = id

    def reply(self) -> bytes:
        return encode_error(self.id, self.code, self.message)


@dataclass(frozen=True, slots=True)
class Submit:
    """Run function ``fn`` with the public inputs ``data``; answer with the same ``id``."""

    id: SubmitId
    fn: str
    data: list[Any]


@dataclass(frozen=True, slots=True)
class Ping:
    """Application-level heartbeat; answered with ``pong``."""


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel submit ``id`` (queued or running). Unknown or finished ids are ignored."""

    id: SubmitId


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Start receiving ``event`` messages of ``topic``."""

    topic: str


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Stop receiving ``event`` messages of ``topic``."""

    topic: str


ClientMessage = Submit | Ping | Cancel | Subscribe | Unsubscribe

_PING: Final = Ping()


def _valid_id(value: Any, max_length: int) -> bool:
    kind = type(value)
    if kind is int:
        return True
    return kind is str and 0 < len(value) <= max_length


def decode_client(
    payload: str | bytes, *, max_id_length: int = 128, max_topic_length: int = 128
) -> ClientMessage:
    """Decode one text frame from a client.

    Raises ``RemoteProtocolError`` with code ``bad_json`` or ``bad_message``.
    Unknown fields are ignored so that the protocol can grow.
    """
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        # orjson reports nesting deeper than 1024 as a decode error too.
        raise RemoteProtocolError(Code.BAD_JSON, f"invalid JSON: {exc}") from None
    if type(obj) is not dict:
        raise RemoteProtocolError(
            Code.BAD_MESSAGE, f"a message must be a JSON object, not {json_kind(obj)}"
        )
    kind = obj.get("type")
    if kind == "submit":
        return _decode_submit(obj, max_id_length)
    if kind == "ping":
        return _PING
    if kind == "cancel":
        id_ = obj.get("id")
        if not _valid_id(id_, max_id_length):
            raise RemoteProtocolError(
                Code.BAD_MESSAGE,
                f'cancel field "id" must be an integer or a string of 1 to {max_id_length} '
                "characters",
            )
        return Cancel(id_)  # type: ignore[arg-type]  # checked by _valid_id
    if kind == "subscribe" or kind == "unsubscribe":
        topic = obj.get("topic")
        if type(topic) is not str or not 0 < len(topic) <= max_topic_length:
            raise RemoteProtocolError(
                Code.BAD_MESSAGE,
                f'{kind} field "topic" must be a string of 1 to {max_topic_length} characters',
            )
        return Subscribe(topic) if kind == "subscribe" else Unsubscribe(topic)
    if kind is None:
        raise RemoteProtocolError(Code.BAD_MESSAGE, 'missing field "type"')
    if type(kind) is not str:
        raise RemoteProtocolError(Code.BAD_MESSAGE, 'field "type" must be a string')
    raise RemoteProtocolError(Code.BAD_MESSAGE, f"unknown message type {kind[:64]!r}")


def _decode_submit(obj: dict[str, Any], max_id_length: int) -> Submit:
    id_ = obj.get("id")
    if not _valid_id(id_, max_id_length):
        raise RemoteProtocolError(
            Code.BAD_MESSAGE,
            f'submit field "id" must be an integer or a string of 1 to {max_id_length} characters',
        )
    fn = obj.get("fn")
    if type(fn) is not str:
        raise RemoteProtocolError(Code.BAD_MESSAGE, 'submit field "fn" must be a string', id_)
    data = obj.get("data", [])
    if type(data) is not list:
        raise RemoteProtocolError(Code.BAD_MESSAGE, 'submit field "data" must be an array', id_)
    return Submit(id_, fn, data)  # type: ignore[arg-type]  # checked by _valid_id


def json_kind(value: Any) -> str:
    """How a value reads in an error message: "a string", "null", ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def encode_welcome(session: str, functions: list[dict[str, Any]], **extra: Any) -> bytes:
    """The first frame of every connection: who you are and what you can call."""
    return orjson.dumps(
        {
            "type": "welcome",
            "protocol": PROTOCOL_VERSION,
            "session": session,
            "functions": functions,
            **extra,
        }
    )


def encode_result(id: SubmitId, data: list[Any]) -> bytes:
    """The outputs of a submit. Raises ``LocalProtocolError`` if they are not JSON."""
    try:
        return orjson.dumps({"type": "result", "id": id, "data": data})
    except orjson.JSONEncodeError as exc:
        raise LocalProtocolError(f"outputs cannot be sent as JSON: {exc}") from None


def encode_error(id: SubmitId | None, code: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "id": id, "code": code, "message": message})


def encode_partial(id: SubmitId, data: list[Any]) -> bytes:
    """One streamed step of a generator function."""
    try:
        return orjson.dumps({"type": "partial", "id": id, "data": data})
    except orjson.JSONEncodeError as exc:
        raise LocalProtocolError(f"outputs cannot be sent as JSON: {exc}") from None


def encode_queued(id: SubmitId, position: int) -> bytes:
    return orjson.dumps({"type": "queued", "id": id, "position": position})


def encode_started(id: SubmitId) -> bytes:
    return orjson.dumps({"type": "started", "id": id})


def encode_event(topic: str, data: Any) -> bytes:
    """An event for every subscriber of ``topic`` (encoded once, sent to all)."""
    try:
        return orjson.dumps({"type": "event", "topic": topic, "data": data})
    except orjson.JSONEncodeError as exc:
        raise LocalProtocolError(f"event data cannot be sent as JSON: {exc}") from None


def encode_subscribed(topic: str, subscribed: bool = True) -> bytes:
    return orjson.dumps({"type": "subscribed" if subscribed else "unsubscribed", "topic": topic})


_PONG: Final = orjson.dumps({"type": "pong"})


def encode_pong() -> bytes:
    return _PONG
