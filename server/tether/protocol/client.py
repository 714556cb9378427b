"""The client's half of the protocol, sans I/O: encode what a client sends, decode
what the server sends.

Used by every Python client of tether: ``tether.client``, the load tester and
``bench/``. ``decode_server`` returns a frozen message from ``messages.py``;
a message type this version does not know decodes to ``None`` (protocol.md:
clients ignore types they do not know), and a known type with a missing or
mistyped field raises ``RemoteProtocolError`` (the server broke the contract).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson

from ..errors import RemoteProtocolError
from .codes import PROTOCOL_VERSION, Code
from .messages import (
    Error,
    Event,
    Partial,
    Pong,
    Queued,
    Result,
    ServerMessage,
    Started,
    SubmitId,
    Subscribed,
    Unsubscribed,
    Welcome,
)

__all__ = [
    "decode_server",
    "decode_welcome",
    "encode_cancel",
    "encode_ping",
    "encode_resume",
    "encode_submit",
    "encode_subscribe",
    "encode_unsubscribe",
]


def encode_submit(id: SubmitId, fn: str, data: list[Any]) -> bytes:
    """A submit frame. Raises ``TypeError`` when ``data`` is not JSON."""
    try:
        return orjson.dumps({"type": "submit", "id": id, "fn": fn, "data": data})
    except orjson.JSONEncodeError as exc:
        raise TypeError(f"submit inputs must be JSON-serialisable: {exc}") from None


def encode_cancel(id: SubmitId) -> bytes:
    return orjson.dumps({"type": "cancel", "id": id})


_PING: Final = orjson.dumps({"type": "ping"})


def encode_ping() -> bytes:
    return _PING


def encode_resume(token: str) -> bytes:
    """A resuming connection's first message (after connecting to ``/ws?resuming=1``)."""
    return orjson.dumps({"type": "resume", "token": token})


def encode_subscribe(topic: str) -> bytes:
    return orjson.dumps({"type": "subscribe", "topic": topic})


def encode_unsubscribe(topic: str) -> bytes:
    return orjson.dumps({"type": "unsubscribe", "topic": topic})


def _bad(kind: str, exc: Exception) -> RemoteProtocolError:
    return RemoteProtocolError(
        Code.BAD_MESSAGE, f"the server sent a {kind!r} message without a valid {exc}"
    )


def _welcome(o: dict[str, Any]) -> Welcome:
    functions = o["functions"]
    session = o["session"]
    if type(functions) is not list or type(session) is not str:
        raise KeyError("session/functions")
    return Welcome(
        protocol=o["protocol"],
        session=session,
        functions=functions,
        topics=list(o.get("topics") or ()),
        deltas=bool(o.get("deltas")),
        resume=o.get("resume"),
        resumed=bool(o.get("resumed")),
        title=o["title"] if type(o.get("title")) is str else None,
        topic_info=o["topic_info"] if type(o.get("topic_info")) is dict else {},
        widgets=o["widgets"] if type(o.get("widgets")) is list else [],
    )


_new_result: Final[Callable[[type[Result]], Result]] = object.__new__
_set_result_id: Final[Callable[[Result, Any], None]] = vars(Result)["id"].__set__
_set_result_data: Final[Callable[[Result, Any], None]] = vars(Result)["data"].__set__


def _result(id: Any, data: Any) -> Result:
    """A ``Result``, built through its slots' setters: the frozen dataclass's __init__
    costs an ``object.__setattr__`` per field, on every reply a load generator reads."""
    result = _new_result(Result)
    _set_result_id(result, id)
    _set_result_data(result, data)
    return result


def _error(o: dict[str, Any]) -> Error:
    return Error(o.get("id"), o["code"], o.get("message", ""), o.get("topic"), o.get("retry_after"))


_DECODERS: Final[dict[str, Callable[[dict[str, Any]], ServerMessage]]] = {
    "result": lambda o: _result(o["id"], o["data"]),
    "error": _error,
    "partial": lambda o: Partial(o["id"], o["data"]),
    "event": lambda o: Event(o["topic"], o.get("data"), o.get("seq"), o.get("current") is True),
    "queued": lambda o: Queued(o["id"], o["position"]),
    "started": lambda o: Started(o["id"]),
    "subscribed": lambda o: Subscribed(o["topic"]),
    "unsubscribed": lambda o: Unsubscribed(o["topic"]),
    "pong": lambda o: Pong(),
    "welcome": _welcome,
}


def decode_server(payload: str | bytes) -> ServerMessage | None:
    """Decode one text frame from the server (``None``: a type this client does not know)."""
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise RemoteProtocolError(Code.BAD_JSON, f"the server sent invalid JSON: {exc}") from None
    if type(obj) is not dict:
        raise RemoteProtocolError(Code.BAD_MESSAGE, "the server sent a frame that is not an object")
    kind = obj.get("type")
    decoder = _DECODERS.get(kind) if type(kind) is str else None
    if decoder is None:
        return None
    try:
        return decoder(obj)
    except (KeyError, TypeError) as exc:
        raise _bad(kind, exc) from None  # type: ignore[arg-type]  # a str here


def decode_welcome(payload: str | bytes) -> Welcome:
    """The first frame of a connection, checked: a ``welcome`` in this client's protocol
    version, else ``RemoteProtocolError`` saying what came instead."""
    message = decode_server(payload)
    if type(message) is not Welcome:
        kind = type(message).__name__.lower() if message is not None else "unknown message"
        raise RemoteProtocolError(Code.BAD_MESSAGE, f"expected a welcome, got a {kind}")
    if message.protocol != PROTOCOL_VERSION:
        raise RemoteProtocolError(
            Code.BAD_MESSAGE,
            f"server speaks protocol {message.protocol!r}, this client speaks {PROTOCOL_VERSION}",
        )
    return message
