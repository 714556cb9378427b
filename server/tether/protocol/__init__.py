"""The tether wire protocol (protocol.md), sans I/O, for both directions.

- ``codes``: the version, error codes, close codes, delta components;
- ``messages``: frozen dataclasses for every message, both ways;
- ``server``: decode client frames, encode server frames;
- ``client``: encode client frames, decode server frames;
- ``deltas``: the output-delta encoder (server) and decoder (client).

No other module of tether builds or parses wire frames.
"""

from __future__ import annotations

from .client import (
    decode_server,
    decode_welcome,
    encode_cancel,
    encode_ping,
    encode_resume,
    encode_submit,
    encode_subscribe,
    encode_unsubscribe,
)
from .codes import DELTA_COMPONENTS, PROTOCOL_VERSION, Close, Code
from .deltas import DeltaDecoder, DeltaEncoder, encode_outputs
from .messages import (
    Cancel,
    ClientMessage,
    Error,
    Event,
    Partial,
    Ping,
    Pong,
    Queued,
    Result,
    ServerMessage,
    Started,
    Submit,
    SubmitId,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Welcome,
)
from .server import (
    decode_client,
    decode_resume,
    encode_error,
    encode_event,
    encode_event_data,
    encode_partial,
    encode_pong,
    encode_queued,
    encode_rejection,
    encode_result,
    encode_started,
    encode_subscribed,
    encode_welcome,
    event_as_current,
    event_prefix,
    event_seq,
    json_kind,
    peek_id,
    retained_event,
    retained_event_parts,
)

__all__ = [
    "DELTA_COMPONENTS",
    "PROTOCOL_VERSION",
    "Cancel",
    "ClientMessage",
    "Close",
    "Code",
    "DeltaDecoder",
    "DeltaEncoder",
    "Error",
    "Event",
    "Partial",
    "Ping",
    "Pong",
    "Queued",
    "Result",
    "ServerMessage",
    "Started",
    "Submit",
    "SubmitId",
    "Subscribe",
    "Subscribed",
    "Unsubscribe",
    "Unsubscribed",
    "Welcome",
    "decode_client",
    "decode_resume",
    "decode_server",
    "decode_welcome",
    "encode_cancel",
    "encode_error",
    "encode_event",
    "encode_event_data",
    "encode_outputs",
    "encode_partial",
    "encode_ping",
    "encode_pong",
    "encode_queued",
    "encode_rejection",
    "encode_result",
    "encode_resume",
    "encode_started",
    "encode_submit",
    "encode_subscribe",
    "encode_subscribed",
    "encode_unsubscribe",
    "encode_welcome",
    "event_as_current",
    "event_prefix",
    "event_seq",
    "json_kind",
    "peek_id",
    "retained_event",
    "retained_event_parts",
]
