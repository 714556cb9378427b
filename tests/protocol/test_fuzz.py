"""Property-based fuzzing of the sans-I/O decoder (hypothesis).

Whatever a client sends, ``decode_client`` either returns one of the message
dataclasses or raises ``RemoteProtocolError`` with ``bad_json`` or
``bad_message`` -- never any other exception. For anything that is a JSON
object, the outcome is checked against ``expected``, a second, independent
reading of the rules in protocol.md.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tether.errors import RemoteProtocolError
from tether.protocol import (
    Cancel,
    ClientMessage,
    Ping,
    Submit,
    Subscribe,
    Unsubscribe,
    decode_client,
    encode_rejection,
)

MAX_ID = 128
MAX_TOPIC = 128
DOCUMENTED = {"bad_json", "bad_message"}
MESSAGES = (Submit, Ping, Cancel, Subscribe, Unsubscribe)

# Modest example counts: this whole file must stay well under ten seconds.
fuzz = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
cheap = settings(fuzz, max_examples=500)

# -- strategies ----------------------------------------------------------------

# orjson reads integers of up to 64 bits (signed or unsigned) as ints.
json_ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
json_scalars = (
    st.none()
    | st.booleans()
    | json_ints
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=8,
)

KNOWN_TYPES = ["submit", "cancel", "subscribe", "unsubscribe", "ping"]
valid_ids = json_ints | st.text(min_size=1, max_size=MAX_ID)
valid_topics = st.text(min_size=1, max_size=MAX_TOPIC)
# Values near the edges of what each field accepts.
edge_values = st.sampled_from(
    [None, True, False, 0, -1, 1.0, 1.5, "", "x" * MAX_ID, "x" * (MAX_ID + 1), [], {}, [1], "é"]
)
field_values = edge_values | json_values


@st.composite
def valid_messages(draw: st.DrawFn) -> tuple[dict[str, Any], ClientMessage]:
    """A valid message as sent on the wire (with unknown extra fields) and its decoding."""
    kind = draw(st.sampled_from(KNOWN_TYPES))
    wire: dict[str, Any] = draw(
        st.dictionaries(
            st.text(max_size=8).filter(lambda k: k not in _FIELDS), json_values, max_size=2
        )
    )
    wire["type"] = kind
    message: ClientMessage
    if kind == "submit":
        id_, fn = draw(valid_ids), draw(st.text(max_size=30))
        data = draw(st.lists(json_values, max_size=3))
        wire.update(id=id_, fn=fn)
        if data or draw(st.booleans()):
            wire["data"] = data
        message = Submit(id_, fn, data)
    elif kind == "cancel":
        wire["id"] = draw(valid_ids)
        message = Cancel(wire["id"])
    elif kind in ("subscribe", "unsubscribe"):
        wire["topic"] = draw(valid_topics)
        message = Subscribe(wire["topic"]) if kind == "subscribe" else Unsubscribe(wire["topic"])
    else:
        message = Ping()
    return wire, message


_FIELDS = {"type", "id", "fn", "data", "topic"}


@st.composite
def message_like_objects(draw: st.DrawFn) -> dict[str, Any]:
    """Objects that look like messages: known or odd types, each field present or not,
    of the right kind, at an edge, or anything at all."""
    obj: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        obj["type"] = draw(st.sampled_from(KNOWN_TYPES) | field_values)
    if draw(st.booleans()):
        obj["id"] = draw(valid_ids | field_values)
    if draw(st.booleans()):
        obj["fn"] = draw(st.text(max_size=10) | field_values)
    if draw(st.booleans()):
        obj["data"] = draw(st.lists(json_values, max_size=4) | field_values)
    if draw(st.booleans()):
        obj["topic"] = draw(valid_topics | field_values)
    return obj


@st.composite
def byte_mutations(draw: st.DrawFn) -> bytes:
    """A valid frame with a few bytes deleted, inserted, replaced, duplicated or cut off."""
    wire, _ = draw(valid_messages())
    frame = bytearray(orjson.dumps(wire))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(frame)))
        op = draw(st.sampled_from(["delete", "insert", "replace", "duplicate", "truncate"]))
        if op == "delete":
            del frame[at : at + draw(st.integers(1, 4))]
        elif op == "insert":
            frame[at:at] = draw(st.binary(min_size=1, max_size=4) | st.sampled_from(_TOKENS))
        elif op == "replace" and at < len(frame):
            frame[at] = draw(st.integers(0, 255))
        elif op == "duplicate":
            frame[at:at] = frame[at : at + draw(st.integers(1, 16))]
        else:
            del frame[at:]
    return bytes(frame)


_TOKENS = [b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\", b"null", b"1e999", b"\xff", b"\xc3"]


@st.composite
def field_mutations(draw: st.DrawFn) -> dict[str, Any]:
    """A valid message with one field removed, or set to another value."""
    wire, _ = draw(valid_messages())
    key = draw(st.sampled_from(sorted(_FIELDS)))
    if draw(st.booleans()):
        wire.pop(key, None)
    else:
        wire[key] = draw(field_values)
    return wire


# -- the oracle ----------------------------------------------------------------


def _id_ok(value: Any) -> bool:
    return type(value) is int or (type(value) is str and 1 <= len(value) <= MAX_ID)


def expected(obj: Any) -> ClientMessage | tuple[str, Any]:
    """What protocol.md says a decoded JSON value becomes: a message, or (code, id)."""
    if type(obj) is not dict:
        return ("bad_message", None)
    kind = obj.get("type")
    if kind == "ping":
        return Ping()
    if kind in ("submit", "cancel"):
        id_ = obj.get("id")
        if not _id_ok(id_):
            return ("bad_message", None)
        if kind == "cancel":
            return Cancel(id_)
        fn, data = obj.get("fn"), obj.get("data", [])
        if type(fn) is not str or type(data) is not list:
            return ("bad_message", id_)
        return Submit(id_, fn, data)
    if kind in ("subscribe", "unsubscribe"):
        topic = obj.get("topic")
        if type(topic) is not str or not 1 <= len(topic) <= MAX_TOPIC:
            return ("bad_message", None)
        return Subscribe(topic) if kind == "subscribe" else Unsubscribe(topic)
    return ("bad_message", None)


def outcome(payload: str | bytes) -> ClientMessage | tuple[str, Any]:
    """Decode; return the message, or (code, id) of the refusal, checking its reply frame.

    Any exception other than ``RemoteProtocolError`` escapes and fails the test.
    """
    try:
        message = decode_client(payload, max_id_length=MAX_ID, max_topic_length=MAX_TOPIC)
    except RemoteProtocolError as exc:
        assert exc.code in DOCUMENTED, exc.code
        reply = orjson.loads(encode_rejection(exc))
        assert reply == {"type": "error", "id": exc.id, "code": exc.code, "message": exc.message}
        assert exc.message
        return (exc.code, exc.id)
    assert type(message) in MESSAGES, message
    return message


def parsed(payload: str | bytes) -> tuple[bool, Any]:
    try:
        return True, orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False, None


def check_against_the_oracle(payload: str | bytes) -> None:
    ok, value = parsed(payload)
    got = outcome(payload)
    if not ok:
        assert got == ("bad_json", None)
        return
    want = expected(value)
    assert got == want
    if isinstance(want, tuple) and want[1] is not None:
        assert type(got[1]) is type(want[1])  # type: ignore[index]  # 1 and 1.0 are ==


def wire_form(message: ClientMessage) -> dict[str, Any]:
    if isinstance(message, Submit):
        return {"type": "submit", "id": message.id, "fn": message.fn, "data": message.data}
    if isinstance(message, Cancel):
        return {"type": "cancel", "id": message.id}
    if isinstance(message, Subscribe):
        return {"type": "subscribe", "topic": message.topic}
    if isinstance(message, Unsubscribe):
        return {"type": "unsubscribe", "topic": message.topic}
    return {"type": "ping"}


# -- properties ----------------------------------------------------------------


@cheap
@given(st.binary(max_size=300))
@example(b"")
@example(b"\xef\xbb\xbf{}")
@example(b'{"type": "ping", "x": "\xed\xa0\x80"}')
def test_random_bytes_decode_to_a_message_or_a_documented_error(payload: bytes) -> None:
    check_against_the_oracle(payload)


@cheap
@given(st.text(alphabet=st.characters(exclude_categories=()), max_size=200))
@example('{"type": "ping", "x": "\ud800"}')
def test_random_text_including_lone_surrogates_decodes_or_is_refused(payload: str) -> None:
    ok, _ = parsed(payload)
    got = outcome(payload)
    if not ok:
        assert got == ("bad_json", None)


@fuzz
@given(json_values)
def test_any_json_value_decodes_as_protocol_md_says(value: Any) -> None:
    check_against_the_oracle(orjson.dumps(value))


@fuzz
@given(message_like_objects())
def test_message_like_objects_decode_as_protocol_md_says(obj: dict[str, Any]) -> None:
    check_against_the_oracle(orjson.dumps(obj))


@fuzz
@given(field_mutations())
def test_a_valid_message_with_a_field_removed_or_changed_decodes_as_protocol_md_says(
    obj: dict[str, Any],
) -> None:
    check_against_the_oracle(orjson.dumps(obj))


@fuzz
@given(byte_mutations())
def test_a_valid_frame_with_mangled_bytes_decodes_or_is_refused_with_a_documented_code(
    payload: bytes,
) -> None:
    check_against_the_oracle(payload)
    try:
        message = decode_client(payload)
    except RemoteProtocolError:
        return
    assert decode_client(orjson.dumps(wire_form(message))) == message


@fuzz
@given(valid_messages(), st.booleans())
def test_valid_messages_round_trip_through_the_decoder(
    sample: tuple[dict[str, Any], ClientMessage], as_text: bool
) -> None:
    wire, message = sample
    frame = orjson.dumps(wire)
    decoded = decode_client(frame.decode() if as_text else frame)
    assert decoded == message
    if isinstance(message, (Submit, Cancel)):
        assert type(decoded.id) is type(message.id)  # type: ignore[union-attr]
    assert decode_client(orjson.dumps(wire_form(decoded))) == decoded


@cheap
@given(st.integers(1, 3000), st.sampled_from(["[", '{"a":']))
def test_nesting_of_any_depth_is_decoded_or_refused(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    inner = "1" if opener != "[" else ""
    payload = '{"type": "ping", "x": ' + opener * depth + inner + closer * depth + "}"
    got = outcome(payload)
    # The ping object is level 1: depth + 1 levels, at most 32 by default.
    if depth < 32:
        assert got == Ping()
    else:
        assert got == ("bad_message" if depth < 1024 else "bad_json", None)
