"""The sans-I/O wire protocol: client frames in, typed messages or error replies out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tether.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from tether.protocol import (
    PROTOCOL_VERSION,
    Ping,
    Submit,
    decode_client,
    encode_error,
    encode_pong,
    encode_rejection,
    encode_result,
    encode_welcome,
    peek_id,
)


def frame(obj: Any) -> bytes:
    return orjson.dumps(obj)


def rejection(payload: str | bytes, **kwargs: Any) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        decode_client(payload, **kwargs)
    return info.value


def nested_lists(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


# -- valid frames ------------------------------------------------------------


@pytest.mark.parametrize("id_", ["a", "req-1", 0, 7, -3, 2**63 - 1])
def test_decoder_accepts_a_submit_with_a_string_or_integer_id(id_: Any) -> None:
    message = decode_client(frame({"type": "submit", "id": id_, "fn": "echo", "data": [1, "x"]}))
    assert message == Submit(id_, "echo", [1, "x"])
    assert type(message.id) is type(id_)


def test_decoder_accepts_text_as_well_as_bytes() -> None:
    text = '{"type": "submit", "id": 1, "fn": "echo", "data": [true]}'
    assert decode_client(text) == decode_client(text.encode()) == Submit(1, "echo", [True])


def test_decoder_treats_a_missing_data_field_as_no_inputs() -> None:
    message = decode_client(frame({"type": "submit", "id": 1, "fn": "now"}))
    assert isinstance(message, Submit)
    assert message.data == []


def test_decoder_accepts_a_ping() -> None:
    assert isinstance(decode_client(b'{"type": "ping"}'), Ping)


def test_decoder_ignores_unknown_fields_of_a_submit() -> None:
    message = decode_client(
        frame({"type": "submit", "id": 1, "fn": "f", "data": [], "trace": {"x": 1}, "v": 2})
    )
    assert message == Submit(1, "f", [])


def test_decoder_ignores_unknown_fields_of_a_ping() -> None:
    assert isinstance(decode_client(frame({"type": "ping", "sent_at": 12.5})), Ping)


def test_decoder_accepts_a_string_id_of_exactly_the_maximum_length() -> None:
    message = decode_client(frame({"type": "submit", "id": "x" * 128, "fn": "f"}))
    assert isinstance(message, Submit)
    assert message.id == "x" * 128


def test_decoder_accepts_nesting_of_exactly_1024_levels_when_allowed() -> None:
    payload = b'{"type": "ping", "deep": ' + b"[" * 1023 + b"]" * 1023 + b"}"
    assert isinstance(decode_client(payload, max_depth=1024), Ping)


def test_decoder_refuses_nesting_beyond_max_depth_as_bad_message_with_the_id() -> None:
    def frame(data: str) -> str:
        return '{"type": "submit", "id": 7, "fn": "f", "data": [' + data + "]}"

    assert isinstance(decode_client(frame("[" * 30 + "]" * 30)), Submit)  # 32 levels: the default
    assert isinstance(decode_client(frame("[[" + "[]," * 40 + "[]]]")), Submit)  # siblings
    assert isinstance(decode_client(frame('"' + "[" * 100 + '"')), Submit)  # inside a string
    error = rejection(frame("[" * 31 + "]" * 31))
    assert (error.code, error.id) == ("bad_message", 7)
    assert "deeper than 32 levels" in error.message
    error = rejection('{"type": "ping", "x": ' + "[" * 3 + "]" * 3 + "}", max_depth=3)
    assert (error.code, error.id) == ("bad_message", None)


# -- bad_json ----------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"{", id="truncated"),
        pytest.param(b'{"type": "ping",}', id="trailing-comma"),
        pytest.param(b"{'type': 'ping'}", id="single-quotes"),
        pytest.param(b'{"type": "ping"} x', id="trailing-garbage"),
        pytest.param("{type: ping}", id="text-unquoted-keys"),
    ],
)
def test_decoder_rejects_invalid_json_as_bad_json(payload: str | bytes) -> None:
    error = rejection(payload)
    assert error.code == "bad_json"
    assert error.id is None


def test_decoder_rejects_invalid_utf8_bytes_as_bad_json() -> None:
    error = rejection(b'{"type": "ping", "x": "\xff\xfe"}')
    assert error.code == "bad_json"
    assert error.id is None


def test_decoder_rejects_nesting_deeper_than_1024_as_bad_json() -> None:
    payload = b'{"type": "ping", "deep": ' + b"[" * 1024 + b"]" * 1024 + b"}"
    error = rejection(payload)
    assert error.code == "bad_json"
    assert error.id is None


def test_bad_json_error_does_not_echo_an_id_from_the_broken_frame() -> None:
    error = rejection(b'{"type": "submit", "id": 5, "fn": "f"')
    assert error.code == "bad_json"
    assert error.id is None


# -- bad_message -------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b"[]", "an array"),
        (b'[{"type": "ping"}]', "an array"),
        (b'"ping"', "a string"),
        (b"42", "a number"),
        (b"1.5", "a number"),
        (b"null", "null"),
        (b"true", "a boolean"),
    ],
)
def test_decoder_rejects_a_frame_that_is_not_an_object(payload: bytes, kind: str) -> None:
    error = rejection(payload)
    assert error.code == "bad_message"
    assert error.id is None
    assert error.message.endswith(f"not {kind}")


def test_decoder_rejects_a_message_without_a_type() -> None:
    error = rejection(frame({"id": 1, "fn": "f", "data": []}))
    assert error.code == "bad_message"
    assert error.id is None
    assert '"type"' in error.message


@pytest.mark.parametrize("kind", [1, 0, True, False, 1.5, ["submit"], {"name": "submit"}])
def test_decoder_rejects_a_non_string_type(kind: Any) -> None:
    error = rejection(frame({"type": kind, "id": 1, "fn": "f"}))
    assert error.code == "bad_message"
    assert error.message == 'field "type" must be a string'


@pytest.mark.parametrize("kind", ["Submit", "SUBMIT", "pong", "result", "", "x" * 500])
def test_decoder_rejects_an_unknown_type(kind: str) -> None:
    error = rejection(frame({"type": kind, "id": 1, "fn": "f"}))
    assert error.code == "bad_message"
    assert "unknown message type" in error.message


def test_unknown_type_message_quotes_at_most_64_characters_of_the_type() -> None:
    error = rejection(frame({"type": "y" * 500}))
    assert "y" * 64 in error.message
    assert "y" * 65 not in error.message


@pytest.mark.parametrize(
    "id_",
    [
        pytest.param(True, id="true"),
        pytest.param(False, id="false"),
        pytest.param(1.0, id="float-integral"),
        pytest.param(1.5, id="float"),
        pytest.param("", id="empty-string"),
        pytest.param("x" * 129, id="too-long-string"),
        pytest.param(None, id="null"),
        pytest.param([1], id="array"),
        pytest.param({"n": 1}, id="object"),
    ],
)
def test_decoder_rejects_a_submit_id_that_is_not_an_integer_or_a_short_string(id_: Any) -> None:
    error = rejection(frame({"type": "submit", "id": id_, "fn": "f", "data": []}))
    assert error.code == "bad_message"
    assert error.id is None
    assert '"id"' in error.message


def test_decoder_rejects_a_boolean_id() -> None:
    error = rejection(b'{"type": "submit", "id": true, "fn": "f"}')
    assert (error.code, error.id) == ("bad_message", None)


def test_decoder_rejects_a_float_id_even_when_it_is_integral() -> None:
    error = rejection(b'{"type": "submit", "id": 3.0, "fn": "f"}')
    assert (error.code, error.id) == ("bad_message", None)


def test_decoder_rejects_an_integer_id_too_big_for_64_bits() -> None:
    error = rejection(b'{"type": "submit", "id": 18446744073709551616, "fn": "f"}')
    assert (error.code, error.id) == ("bad_message", None)


def test_decoder_rejects_a_submit_without_an_id() -> None:
    error = rejection(frame({"type": "submit", "fn": "f"}))
    assert (error.code, error.id) == ("bad_message", None)


def test_decoder_honours_a_custom_maximum_id_length() -> None:
    assert decode_client(frame({"type": "submit", "id": "abcd", "fn": "f"}), max_id_length=4)
    error = rejection(frame({"type": "submit", "id": "abcde", "fn": "f"}), max_id_length=4)
    assert error.code == "bad_message"
    assert "1 to 4" in error.message


@pytest.mark.parametrize("fn", [None, 3, True, ["f"], {"name": "f"}])
@pytest.mark.parametrize("id_", ["req-9", 9])
def test_decoder_rejects_a_non_string_fn_and_echoes_the_valid_id(fn: Any, id_: Any) -> None:
    error = rejection(frame({"type": "submit", "id": id_, "fn": fn, "data": []}))
    assert error.code == "bad_message"
    assert error.id == id_
    assert type(error.id) is type(id_)
    assert '"fn"' in error.message


def test_decoder_rejects_a_submit_without_fn_and_echoes_the_id() -> None:
    error = rejection(frame({"type": "submit", "id": 4}))
    assert (error.code, error.id) == ("bad_message", 4)


@pytest.mark.parametrize("data", [None, "abc", 1, {"0": 1}, True])
@pytest.mark.parametrize("id_", ["req-9", 9])
def test_decoder_rejects_non_array_data_and_echoes_the_valid_id(data: Any, id_: Any) -> None:
    error = rejection(frame({"type": "submit", "id": id_, "fn": "f", "data": data}))
    assert error.code == "bad_message"
    assert error.id == id_
    assert '"data"' in error.message


def test_remote_protocol_error_is_a_protocol_error_whose_text_is_its_message() -> None:
    error = rejection(b"[]")
    assert isinstance(error, ProtocolError)
    assert str(error) == error.message


# -- error replies -----------------------------------------------------------


def test_error_reply_of_a_bad_json_frame_is_an_error_message_with_a_null_id() -> None:
    reply = orjson.loads(encode_rejection(rejection(b"{")))
    assert set(reply) == {"type", "id", "code", "message"}
    assert reply["type"] == "error"
    assert reply["id"] is None
    assert reply["code"] == "bad_json"
    assert isinstance(reply["message"], str)
    assert reply["message"]


@pytest.mark.parametrize("id_", ["abc", 12])
def test_error_reply_echoes_the_submit_id(id_: Any) -> None:
    error = rejection(frame({"type": "submit", "id": id_, "fn": 1}))
    assert orjson.loads(encode_rejection(error)) == {
        "type": "error",
        "id": id_,
        "code": "bad_message",
        "message": error.message,
    }


def test_error_reply_of_a_hand_built_error_carries_its_fields() -> None:
    reply = encode_rejection(RemoteProtocolError("unknown_fn", "no function named 'x'", "r1"))
    assert orjson.loads(reply) == {
        "type": "error",
        "id": "r1",
        "code": "unknown_fn",
        "message": "no function named 'x'",
    }


def test_encode_error_writes_a_null_id() -> None:
    assert orjson.loads(encode_error(None, "internal", "boom")) == {
        "type": "error",
        "id": None,
        "code": "internal",
        "message": "boom",
    }


# -- server frames -----------------------------------------------------------


@pytest.mark.parametrize("id_", ["r-1", 5])
def test_encode_result_wraps_the_outputs_with_the_submit_id(id_: Any) -> None:
    data = ["hi", 2, 3.5, None, True, [["a", "b"]], {"k": [1]}]
    assert orjson.loads(encode_result(id_, data)) == {"type": "result", "id": id_, "data": data}


def test_encode_result_sends_tuples_as_arrays() -> None:
    assert orjson.loads(encode_result(1, [(1, 2)])) == {"type": "result", "id": 1, "data": [[1, 2]]}


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({1, 2}, id="set"),
        pytest.param(object(), id="object"),
        pytest.param(b"bytes", id="bytes"),
        pytest.param({1: "int key"}, id="int-key"),
        pytest.param(2**64, id="int-beyond-64-bits"),
        pytest.param(lambda: None, id="function"),
    ],
)
def test_encode_result_refuses_a_value_that_is_not_json(value: Any) -> None:
    with pytest.raises(LocalProtocolError, match="cannot be sent as JSON"):
        encode_result(1, [value])


def test_encode_result_refuses_nesting_beyond_the_encoder_limit() -> None:
    # The result object is one level, so data nested 254 deep makes 255 levels.
    with pytest.raises(LocalProtocolError):
        encode_result(1, nested_lists(254))


def test_encode_result_accepts_nesting_just_inside_the_encoder_limit() -> None:
    assert orjson.loads(encode_result(1, nested_lists(253)))["data"] == nested_lists(253)


def test_local_protocol_error_is_a_protocol_error_but_not_a_remote_one() -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode_result(1, [{1, 2}])
    assert isinstance(info.value, ProtocolError)
    assert not isinstance(info.value, RemoteProtocolError)


def test_encode_welcome_carries_version_session_and_functions() -> None:
    functions = [{"name": "echo", "inputs": ["text"], "outputs": ["text"], "labels": ["s"]}]
    assert orjson.loads(encode_welcome("sess-1", functions)) == {
        "type": "welcome",
        "protocol": PROTOCOL_VERSION,
        "session": "sess-1",
        "functions": functions,
    }


def test_encode_welcome_adds_extra_fields() -> None:
    welcome = orjson.loads(encode_welcome("s", [], title="Demo", limits={"max": 3}))
    assert welcome["title"] == "Demo"
    assert welcome["limits"] == {"max": 3}
    assert welcome["type"] == "welcome"


def test_protocol_md_documents_the_version_the_code_speaks() -> None:
    doc = (Path(__file__).resolve().parents[2] / "protocol.md").read_text()
    assert f"**Version {PROTOCOL_VERSION}.**" in doc
    assert orjson.loads(encode_welcome("s", []))["protocol"] == PROTOCOL_VERSION


def test_encode_pong_is_a_pong_message() -> None:
    assert orjson.loads(encode_pong()) == {"type": "pong"}


def test_peek_id_reads_a_big_frame_s_id_from_its_start_only() -> None:
    pad = "x" * 100_000
    assert peek_id(f'{{"type": "submit", "id": 12, "fn": "f", "data": ["{pad}"]}}') == 12
    assert peek_id(f'{{"type":"submit","id":"a-b","fn":"f","data":["{pad}"]}}'.encode()) == "a-b"
    assert peek_id(f'{{"fn": "f", "data": ["{pad}"], "id": 12, "type": "submit"}}') is None
    assert peek_id(f'{{"type": "submit", "id": 1.5, "data": ["{pad}"]}}') is None
    assert peek_id('{"fn": "f", "id": 12}') == 12  # small frames are decoded
