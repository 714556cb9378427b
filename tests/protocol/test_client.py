"""The protocol's client half: what a client encodes the server decodes, and what the
server encodes a client decodes into typed messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tether.errors import RemoteProtocolError
from tether.protocol import (
    PROTOCOL_VERSION,
    Cancel,
    Error,
    Event,
    Partial,
    Ping,
    Pong,
    Queued,
    Result,
    Started,
    Submit,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Welcome,
    decode_client,
    decode_server,
    decode_welcome,
    encode_cancel,
    encode_error,
    encode_event,
    encode_partial,
    encode_ping,
    encode_pong,
    encode_queued,
    encode_result,
    encode_started,
    encode_submit,
    encode_subscribe,
    encode_subscribed,
    encode_unsubscribe,
    encode_welcome,
)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (encode_submit(7, "chat", ["hi"]), Submit(7, "chat", ["hi"])),
        (encode_submit("a-1", "f", []), Submit("a-1", "f", [])),
        (encode_cancel(7), Cancel(7)),
        (encode_ping(), Ping()),
        (encode_subscribe("scores"), Subscribe("scores")),
        (encode_unsubscribe("room:x"), Unsubscribe("room:x")),
    ],
)
def test_what_the_client_half_encodes_the_server_half_decodes_to_the_same_message(
    frame: bytes, message: Any
) -> None:
    assert decode_client(frame) == message


def test_a_submit_whose_inputs_are_not_json_is_refused_before_it_is_sent() -> None:
    with pytest.raises(TypeError, match="JSON"):
        encode_submit(1, "f", [object()])


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (encode_result(1, [[["hi", "yo"]]]), Result(1, [[["hi", "yo"]]])),
        (encode_partial("p", [1]), Partial("p", [1])),
        (encode_error(3, "fn_error", "boom"), Error(3, "fn_error", "boom")),
        (
            encode_error(None, "rate_limited", "slow down", retry_after=0.5),
            Error(None, "rate_limited", "slow down", retry_after=0.5),
        ),
        (
            encode_error(None, "forbidden_topic", "no", topic="t"),
            Error(None, "forbidden_topic", "no", topic="t"),
        ),
        (encode_queued(4, 2), Queued(4, 2)),
        (encode_started(4), Started(4)),
        (encode_event("scores", [9, 8]), Event("scores", [9, 8])),
        (encode_event("t", None), Event("t", None)),
        (encode_subscribed("t"), Subscribed("t")),
        (encode_subscribed("t", subscribed=False), Unsubscribed("t")),
        (encode_pong(), Pong()),
    ],
)
def test_what_the_server_half_encodes_the_client_half_decodes_to_a_typed_message(
    frame: bytes, message: Any
) -> None:
    assert decode_server(frame) == message


def test_the_client_decodes_a_welcome_with_its_manifest_and_resume_fields() -> None:
    functions = [{"name": "chat", "inputs": ["text"], "outputs": ["chatbot"], "labels": ["m"]}]
    frame = encode_welcome("s1", functions, topics=["scores"], deltas=True, resume="tok")
    welcome = decode_welcome(frame)
    assert welcome == Welcome(
        PROTOCOL_VERSION, "s1", functions, ["scores"], deltas=True, resume="tok", resumed=False
    )
    assert welcome.outputs() == {"chat": ["chatbot"]}


def test_a_message_type_the_client_does_not_know_decodes_to_none() -> None:
    assert decode_server(b'{"type": "from_the_future", "x": 1}') is None


def test_unknown_fields_of_a_known_message_are_ignored() -> None:
    assert decode_server(b'{"type":"result","id":1,"data":[],"later":true}') == Result(1, [])


@pytest.mark.parametrize(
    "payload",
    [b'{"type": "result", "data": []}', b'{"type": "event"}', b'{"type": "queued", "id": 1}'],
)
def test_a_known_message_missing_a_field_is_a_protocol_error_of_the_server(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_server(payload)
    assert info.value.code == "bad_message"


@pytest.mark.parametrize(("payload", "code"), [(b"{", "bad_json"), (b"[1]", "bad_message")])
def test_a_frame_that_is_not_a_json_object_is_a_protocol_error(payload: bytes, code: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_server(payload)
    assert info.value.code == code


def test_the_first_frame_must_be_a_welcome() -> None:
    with pytest.raises(RemoteProtocolError, match="expected a welcome, got a result"):
        decode_welcome(encode_result(1, []))


def test_a_welcome_in_another_protocol_version_is_refused_with_both_versions_named() -> None:
    frame = orjson.dumps({"type": "welcome", "protocol": 1, "session": "s", "functions": []})
    with pytest.raises(
        RemoteProtocolError, match=f"speaks protocol 1, this client speaks {PROTOCOL_VERSION}"
    ):
        decode_welcome(frame)


def test_the_browser_client_speaks_the_version_the_server_speaks() -> None:
    source = (Path(__file__).resolve().parents[2] / "client_static" / "tether.js").read_text()
    assert f"export const PROTOCOL = {PROTOCOL_VERSION};" in source


def test_the_client_decodes_the_apps_declarations_of_protocol_9() -> None:
    info = {"scores": {"label": "Top scores", "description": "the best three"}}
    widgets = [{"kind": "room", "label": "Chat room", "join": "j", "say": "s", "leave": "l"}]
    frame = encode_welcome("s1", [], title="My app", topic_info=info, widgets=widgets)
    welcome = decode_welcome(frame)
    assert (welcome.title, welcome.topic_info, welcome.widgets) == ("My app", info, widgets)


def test_a_welcome_without_the_declarations_or_with_mistyped_ones_decodes_to_defaults() -> None:
    bare = decode_server(orjson.dumps({"type": "welcome", "protocol": 9, "session": "s",
                                       "functions": []}))  # fmt: skip
    odd = decode_server(orjson.dumps({"type": "welcome", "protocol": 9, "session": "s",
                                      "functions": [], "title": 3, "topic_info": [],
                                      "widgets": {}}))  # fmt: skip
    for welcome in (bare, odd):
        assert isinstance(welcome, Welcome)
        assert (welcome.title, welcome.topic_info, welcome.widgets) == (None, {}, [])
