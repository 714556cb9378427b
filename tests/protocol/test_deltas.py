"""Output deltas (protocol.md, "Output deltas"): the encoder sends a chatbot output as
keep + append, and the decoder rebuilds it by the output's declared component only."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tether.errors import LocalProtocolError, RemoteProtocolError
from tether.protocol import DeltaDecoder, DeltaEncoder, encode_outputs

CHAT = ("chatbot",)


def wire(frame: bytes) -> list[Any]:
    data: list[Any] = orjson.loads(frame)["data"]
    return data


def test_the_first_value_of_an_output_is_sent_with_keep_zero() -> None:
    enc = DeltaEncoder()
    assert wire(encode_outputs(enc, 1, "chat", CHAT, [[["a", "b"]]], partial=False)) == [
        {"keep": 0, "append": [["a", "b"]]}
    ]


def test_a_grown_history_is_sent_as_its_new_pairs_only() -> None:
    enc = DeltaEncoder()
    history = [["a", "b"]]
    encode_outputs(enc, 1, "chat", CHAT, [history], partial=False)
    history.append(["c", "d"])  # mutated in place, as user code does
    assert wire(encode_outputs(enc, 2, "chat", CHAT, [history], partial=False)) == [
        {"keep": 1, "append": [["c", "d"]]}
    ]


def test_a_changed_last_pair_is_resent_while_a_reply_streams() -> None:
    enc = DeltaEncoder()
    encode_outputs(enc, 1, "chat", CHAT, [[["hi", "He"]]], partial=True)
    assert wire(encode_outputs(enc, 1, "chat", CHAT, [[["hi", "Hello"]]], partial=True)) == [
        {"keep": 0, "append": [["hi", "Hello"]]}
    ]


def test_outputs_of_other_components_are_sent_whole_even_beside_a_chatbot() -> None:
    enc = DeltaEncoder()
    frame = encode_outputs(enc, 1, "f", ("json", "chatbot"), [{"keep": 0}, []], partial=False)
    assert wire(frame) == [{"keep": 0}, {"keep": 0, "append": []}]


def test_without_an_encoder_every_output_is_sent_whole() -> None:
    assert wire(encode_outputs(None, 1, "chat", CHAT, [[["a", "b"]]], partial=False)) == [
        [["a", "b"]]
    ]


def test_a_frame_that_cannot_be_encoded_leaves_the_encoder_as_it_was() -> None:
    enc = DeltaEncoder()
    encode_outputs(enc, 1, "f", ("chatbot", "json"), [[["a", "b"]], 1], partial=False)
    with pytest.raises(LocalProtocolError):
        encode_outputs(
            enc, 2, "f", ("chatbot", "json"), [[["a", "b"], ["c", "d"]], {1}], partial=False
        )
    # The failed frame was never sent: the next delta still builds on the first value.
    frame = encode_outputs(
        enc, 3, "f", ("chatbot", "json"), [[["a", "b"], ["c", "d"]], 1], partial=False
    )
    assert wire(frame)[0] == {"keep": 1, "append": [["c", "d"]]}


def test_the_decoder_rebuilds_a_conversation_from_the_encoders_deltas() -> None:
    enc = DeltaEncoder()
    dec = DeltaDecoder({"chat": ["chatbot"]})
    history: list[list[str]] = []
    for turn in range(20):
        history.append([f"q{turn}", f"a{turn}"])
        data = wire(encode_outputs(enc, turn, "chat", CHAT, [history], partial=False))
        assert dec.decode("chat", data) == [history]


def test_the_decoder_hands_back_copies_its_caller_may_mutate() -> None:
    dec = DeltaDecoder({"chat": ["chatbot"]})
    first = dec.decode("chat", [{"keep": 0, "append": [["a", "b"]]}])
    first[0].append(["mine", "only"])
    assert dec.decode("chat", [{"keep": 1, "append": []}]) == [[["a", "b"]]]


def test_a_json_output_shaped_like_a_delta_is_not_decoded_as_one() -> None:
    # The bug this pins: the client decoded any {"keep", "append"} value as a delta.
    dec = DeltaDecoder({"f": ["json"], "g": ["json", "json"]})
    assert dec.decode("f", [{"keep": 0, "append": [1]}]) == [{"keep": 0, "append": [1]}]
    odd = {"keep": 2, "append": ["x"], "other": 1}
    assert dec.decode("g", [odd, odd]) == [odd, odd]


def test_a_function_missing_from_the_manifest_is_passed_through() -> None:
    assert DeltaDecoder({}).decode("nope", [{"keep": 0, "append": [1]}]) == [
        {"keep": 0, "append": [1]}
    ]


@pytest.mark.parametrize(
    "value",
    [[["a", "b"]], {"keep": 5, "append": []}, {"keep": -1, "append": []}, {"keep": 0}, None],
)
def test_a_chatbot_output_that_is_not_a_valid_delta_is_a_protocol_error(value: Any) -> None:
    dec = DeltaDecoder({"chat": ["chatbot"]})
    with pytest.raises(RemoteProtocolError):
        dec.decode("chat", [value])
