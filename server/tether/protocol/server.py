"""The server's half of the protocol, sans I/O: decode what clients send, encode
what the server sends.

Nothing here touches a socket or an event loop. ``decode_client`` turns one
text frame into a frozen message (``messages.py``) or raises
``RemoteProtocolError`` carrying the code to answer with; the ``encode_*``
functions build the server's frames. protocol.md is the contract.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import chain, compress
from typing import Any, Final

import orjson

from ..errors import LocalProtocolError, RemoteProtocolError
from .codes import PROTOCOL_VERSION, Code
from .messages import (
    Cancel,
    ClientMessage,
    Ping,
    Submit,
    SubmitId,
    Subscribe,
    Unsubscribe,
)

__all__ = [
    "decode_client",
    "decode_resume",
    "encode_error",
    "encode_event",
    "encode_event_data",
    "encode_partial",
    "encode_pong",
    "encode_queued",
    "encode_rejection",
    "encode_result",
    "encode_started",
    "encode_subscribed",
    "encode_welcome",
    "event_as_current",
    "event_prefix",
    "event_seq",
    "json_kind",
    "peek_id",
    "retained_event",
    "retained_event_parts",
]

_PING: Final = Ping()


def _valid_id(value: Any, max_length: int) -> bool:
    kind = type(value)
    if kind is int:
        return True
    return kind is str and 0 < len(value) <= max_length


def decode_client(
    payload: str | bytes,
    *,
    max_id_length: int = 128,
    max_topic_length: int = 128,
    max_depth: int = 32,
) -> ClientMessage:
    """Decode one text frame from a client.

    Raises ``RemoteProtocolError`` with code ``bad_json`` or ``bad_message`` (also
    for a message nesting arrays and objects deeper than ``max_depth`` levels, the
    message object being level 1). Unknown fields are ignored so that the protocol
    can grow.
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
    if len(payload) > max_depth and _too_deep(payload, obj, max_depth):
        id_ = obj.get("id")
        raise RemoteProtocolError(
            Code.BAD_MESSAGE,
            f"the message nests arrays and objects deeper than {max_depth} levels",
            id_ if _valid_id(id_, max_id_length) else None,
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


def decode_resume(payload: str | bytes, max_length: int = 128) -> str | None:
    """The token of a ``{"type": "resume", "token": ...}`` frame (a resuming
    connection's first message), or None when the frame is not one."""
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict or obj.get("type") != "resume":
        return None
    token = obj.get("token")
    if type(token) is not str or not 0 < len(token) <= max_length:
        return None
    return token


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
    # Built through the slots' own setters: the frozen dataclass's __init__ costs three
    # object.__setattr__ calls, about 0.6 µs of every submit.
    submit = _new_submit(Submit)
    _set_id(submit, id_)
    _set_fn(submit, fn)
    _set_data(submit, data)
    return submit


_new_submit: Final[Callable[[type[Submit]], Submit]] = object.__new__
_set_id: Final[Callable[[Submit, Any], None]] = vars(Submit)["id"].__set__
_set_fn: Final[Callable[[Submit, Any], None]] = vars(Submit)["fn"].__set__
_set_data: Final[Callable[[Submit, Any], None]] = vars(Submit)["data"].__set__


def _too_deep(payload: str | bytes, obj: dict[str, Any], max_depth: int) -> bool:
    """Does ``obj`` (decoded from ``payload``) nest deeper than ``max_depth``?

    Nesting that deep takes more than ``max_depth`` brackets: counting them (at C
    speed) clears almost every message without a walk. The rest is walked one
    level at a time, containers only, with C-level iteration, and at most
    ``max_depth`` levels down.
    """
    if isinstance(payload, str):
        openers = payload.count("[") + payload.count("{")
    else:
        openers = payload.count(b"[") + payload.count(b"{")
    if openers <= max_depth:
        return False
    level: list[Any] = [obj]
    is_container = _CONTAINERS.__contains__
    for _ in range(max_depth):  # level k + 1 holds the containers at depth k + 1
        items = list(chain.from_iterable([n.values() if type(n) is dict else n for n in level]))
        level = list(compress(items, map(is_container, map(type, items))))
        if not level:
            return False
    return True


_CONTAINERS: Final = frozenset({list, dict})


# A submit's id where clients put it, right after its type (peek_id of a big frame).
_ID_PREFIX: Final = re.compile(
    r'\s*\{\s*"type"\s*:\s*"[a-z]+"\s*,\s*"id"\s*:\s*(-?[0-9]{1,19}(?![0-9.eE])|"[^"\\]{1,128}")'
)


def peek_id(payload: str | bytes, max_decode: int = 1 << 16) -> SubmitId | None:
    """The ``id`` of a frame that will not be decoded in full (a rate-limited one),
    when it has a usable one. A frame longer than ``max_decode`` is not decoded at
    all: its id is read only from its start, where clients put it (``{"type": ...,
    "id": ...``)."""
    if len(payload) > max_decode:
        head = payload[:256]
        text = head if isinstance(head, str) else head.decode("utf-8", "replace")
        match = _ID_PREFIX.match(text)
        if match is None:
            return None
        peeked = orjson.loads(match.group(1))
        return peeked if type(peeked) in (int, str) else None
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    id_ = obj.get("id") if type(obj) is dict else None
    return id_ if type(id_) in (int, str) else None


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
    """The first frame of every connection: who you are and what you can call.

    ``extra`` holds the other fields of protocol.md's welcome: ``topics``, ``deltas``,
    ``resume``, ``resumed``, and since protocol 9 the app's ``title``, ``topic_info``
    and ``widgets`` (``App.welcome_fields``)."""
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


def encode_partial(id: SubmitId, data: list[Any]) -> bytes:
    """One streamed step of a generator function."""
    try:
        return orjson.dumps({"type": "partial", "id": id, "data": data})
    except orjson.JSONEncodeError as exc:
        raise LocalProtocolError(f"outputs cannot be sent as JSON: {exc}") from None


def encode_error(
    id: SubmitId | None,
    code: str,
    message: str,
    *,
    topic: str | None = None,
    retry_after: float | None = None,
) -> bytes:
    """An error reply; ``topic`` for a refused subscription, ``retry_after`` for
    ``rate_limited``."""
    frame: dict[str, Any] = {"type": "error", "id": id, "code": code, "message": message}
    if topic is not None:
        frame["topic"] = topic
    if retry_after is not None:
        frame["retry_after"] = retry_after
    return orjson.dumps(frame)


def encode_rejection(error: RemoteProtocolError) -> bytes:
    """The error reply to a frame ``decode_client`` rejected (the connection stays open)."""
    return encode_error(error.id, error.code, error.message)


def encode_queued(id: SubmitId, position: int) -> bytes:
    return orjson.dumps({"type": "queued", "id": id, "position": position})


def encode_started(id: SubmitId) -> bytes:
    return orjson.dumps({"type": "started", "id": id})


def event_prefix(topic: str) -> bytes:
    """An event frame up to its data: ``event_prefix(t) + data + b"}"`` is the frame.

    For the Redis store, whose scripts build an event from data they compute.
    """
    return b'{"type":"event","topic":' + orjson.dumps(topic) + b',"data":'


def encode_event(topic: str, data: Any) -> bytes:
    """An event for every subscriber of ``topic`` (encoded once, sent to all)."""
    try:
        return orjson.dumps({"type": "event", "topic": topic, "data": data})
    except orjson.JSONEncodeError as exc:
        raise LocalProtocolError(f"event data cannot be sent as JSON: {exc}") from None


def encode_event_data(data: Any) -> bytes:
    """An event's ``data`` as JSON, for ``retained_event`` (``LocalProtocolError`` if it
    cannot be sent)."""
    try:
        return orjson.dumps(data)
    except orjson.JSONEncodeError as exc:
        raise LocalProtocolError(f"event data cannot be sent as JSON: {exc}") from None


# A change of a topic's current value: ``seq`` first, so that a frame read back
# from Redis tells its kind and order from its first bytes.
_RETAINED_HEAD: Final = b'{"type":"event","seq":'
_CURRENT: Final = b'"current":true,'


def retained_event_parts(topic: str) -> tuple[bytes, bytes]:
    """``(head, tail)``: ``head + seq + tail + data + b"}"`` is a change of ``topic``'s
    current value (for the Redis store, whose scripts make the ``seq``)."""
    return _RETAINED_HEAD, b',"topic":' + orjson.dumps(topic) + b',"data":'


def retained_event(topic: str, seq: int, data: bytes) -> bytes:
    """A change of ``topic``'s current value to ``data`` (JSON), its ``seq``-th."""
    return b'%s%d,"topic":%s,"data":%s}' % (_RETAINED_HEAD, seq, orjson.dumps(topic), data)


def event_seq(frame: bytes) -> int | None:
    """The ``seq`` of a change of a current value; None for any other frame."""
    if not frame.startswith(_RETAINED_HEAD):
        return None
    end = frame.index(b",", len(_RETAINED_HEAD))
    return int(frame[len(_RETAINED_HEAD) : end])


def event_as_current(frame: bytes) -> bytes:
    """The change ``frame`` (``retained_event``) as the current value a new subscriber
    gets first: the same event with ``"current": true``."""
    end = frame.index(b",", len(_RETAINED_HEAD)) + 1
    return frame[:end] + _CURRENT + frame[end:]


def encode_subscribed(topic: str, subscribed: bool = True) -> bytes:
    return orjson.dumps({"type": "subscribed" if subscribed else "unsubscribed", "topic": topic})


_PONG: Final = orjson.dumps({"type": "pong"})


def encode_pong() -> bytes:
    return _PONG
