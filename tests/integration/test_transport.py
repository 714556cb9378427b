"""The WebSocket transport, driven by a raw aiohttp client that can misbehave."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
import orjson
import pytest

import tether
from tether import App


def echo_app() -> App:
    app = App("echo")

    @app.function(inputs=["text", "number"], outputs="json")
    def echo(text, n):
        """Echo the inputs back."""
        return {"text": text, "n": n}

    return app


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    return orjson.loads(msg.data)  # type: ignore[no-any-return]


async def open_ws(srv, http: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(srv.ws_url)
    welcome = await receive(ws)
    assert welcome["type"] == "welcome"
    return ws


async def test_the_welcome_names_the_session_and_lists_public_inputs_and_outputs(serve_app):
    srv = serve_app(echo_app())
    async with aiohttp.ClientSession() as http, http.ws_connect(srv.ws_url) as ws:
        welcome = await receive(ws)
    assert welcome["type"] == "welcome"
    assert welcome["protocol"] == tether.PROTOCOL_VERSION
    assert isinstance(welcome["session"], str) and len(welcome["session"]) >= 16
    (fn,) = welcome["functions"]
    assert fn["name"] == "echo"
    assert fn["inputs"] == ["text", "number"]
    assert fn["outputs"] == ["json"]
    assert fn["labels"] == ["text", "n"]
    assert fn["description"] == "Echo the inputs back."


async def test_state_slots_never_appear_in_the_welcome(serve_app):
    app = App()

    @app.function(inputs=["text", "state"], outputs=["chatbot", "state"])
    def chat(text, history=None):
        return [], []

    srv = serve_app(app)
    async with aiohttp.ClientSession() as http, http.ws_connect(srv.ws_url) as ws:
        (fn,) = (await receive(ws))["functions"]
    assert fn["inputs"] == ["text"]
    assert fn["outputs"] == ["chatbot"]


MALFORMED: list[tuple[str, str | bytes, str, Any]] = [
    ("invalid json", "{not json", "bad_json", None),
    ("empty frame", "", "bad_json", None),
    ("deeply nested json", "[" * 5000 + "]" * 5000, "bad_json", None),
    ("a json array", "[1, 2, 3]", "bad_message", None),
    ("a json string", '"submit"', "bad_message", None),
    ("a json null", "null", "bad_message", None),
    ("no type", '{"id": 1}', "bad_message", None),
    ("type not a string", '{"type": 7}', "bad_message", None),
    ("unknown type", '{"type": "launch"}', "bad_message", None),
    ("submit without id", '{"type": "submit", "fn": "echo", "data": []}', "bad_message", None),
    (
        "submit with float id",
        '{"type":"submit","id":1.5,"fn":"echo","data":[]}',
        "bad_message",
        None,
    ),
    (
        "submit with empty id",
        '{"type":"submit","id":"","fn":"echo","data":[]}',
        "bad_message",
        None,
    ),
    (
        "submit with overlong id",
        '{"type":"submit","id":"' + "x" * 200 + '","fn":"echo"}',
        "bad_message",
        None,
    ),
    ("fn not a string", '{"type":"submit","id":3,"fn":5,"data":[]}', "bad_message", 3),
    ("data not an array", '{"type":"submit","id":4,"fn":"echo","data":{}}', "bad_message", 4),
    ("unknown function", '{"type":"submit","id":5,"fn":"nope","data":[]}', "unknown_fn", 5),
    ("too few arguments", '{"type":"submit","id":6,"fn":"echo","data":["a"]}', "bad_arguments", 6),
    (
        "too many arguments",
        '{"type":"submit","id":7,"fn":"echo","data":["a",1,2]}',
        "bad_arguments",
        7,
    ),
    (
        "a number that is text",
        '{"type":"submit","id":8,"fn":"echo","data":["a","one"]}',
        "bad_arguments",
        8,
    ),
    (
        "a text that is a number",
        '{"type":"submit","id":"x","fn":"echo","data":[1,1]}',
        "bad_arguments",
        "x",
    ),
    (
        "a number that is a boolean",
        '{"type":"submit","id":9,"fn":"echo","data":["a",true]}',
        "bad_arguments",
        9,
    ),
    (
        "a huge array as data",
        '{"type":"submit","id":10,"fn":"echo","data":[' + "1," * 50000 + "1]}",
        "bad_arguments",
        10,
    ),
    ("a binary frame", b"\x00\x01binary", "bad_message", None),
]


@pytest.mark.parametrize(
    ("frame", "code", "reply_id"),
    [pytest.param(frame, code, rid, id=name) for name, frame, code, rid in MALFORMED],
)
async def test_a_malformed_message_gets_its_error_code_and_the_connection_stays_usable(
    serve_app, frame, code, reply_id
):
    srv = serve_app(echo_app())
    async with aiohttp.ClientSession() as http:
        ws = await open_ws(srv, http)
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)
        reply = await receive(ws)
        assert reply["type"] == "error"
        assert reply["code"] == code
        assert reply["id"] == reply_id
        assert isinstance(reply["message"], str) and reply["message"]
        await ws.send_str('{"type":"submit","id":"after","fn":"echo","data":["ok",2]}')
        assert await receive(ws) == {
            "type": "result",
            "id": "after",
            "data": [{"text": "ok", "n": 2}],
        }
        await ws.close()


async def test_unknown_fields_are_ignored(serve_app):
    srv = serve_app(echo_app())
    async with aiohttp.ClientSession() as http:
        ws = await open_ws(srv, http)
        await ws.send_str('{"type":"submit","id":1,"fn":"echo","data":["a",1],"trace":"t-1"}')
        assert (await receive(ws))["type"] == "result"
        await ws.send_str('{"type":"ping","extra":{"x":1}}')
        assert await receive(ws) == {"type": "pong"}
        await ws.close()


async def test_a_message_over_the_size_limit_closes_with_1009_and_others_are_untouched(serve_app):
    srv = serve_app(echo_app(), max_message_size=4096)
    async with aiohttp.ClientSession() as http:
        bystander = await open_ws(srv, http)
        ws = await open_ws(srv, http)
        await ws.send_str('{"type":"submit","id":1,"fn":"echo","data":["' + "x" * 5000 + '",1]}')
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 1009
        await bystander.send_str('{"type":"submit","id":2,"fn":"echo","data":["still here",1]}')
        assert (await receive(bystander))["data"] == [{"text": "still here", "n": 1}]
        await bystander.close()


async def test_a_duplicate_in_flight_id_is_refused_without_disturbing_the_first(serve_app):
    app = App()
    gate = asyncio.Event()

    @app.function(outputs="text")
    async def wait():
        await gate.wait()
        return "done"

    srv = serve_app(app)
    async with aiohttp.ClientSession() as http:
        ws = await open_ws(srv, http)
        await ws.send_str('{"type":"submit","id":1,"fn":"wait"}')
        await ws.send_str('{"type":"submit","id":1,"fn":"wait"}')
        reply = await receive(ws)
        assert (reply["code"], reply["id"]) == ("duplicate_id", 1)
        srv.loop.call_soon_threadsafe(gate.set)
        assert await receive(ws) == {"type": "result", "id": 1, "data": ["done"]}
        await ws.close()


async def test_a_function_returning_something_that_is_not_json_gets_fn_error(serve_app):
    app = App()

    @app.function(outputs="json")
    def bad():
        return {1, 2}

    srv = serve_app(app)
    async with tether.connect(srv.ws_url) as c:
        with pytest.raises(tether.TetherError) as info:
            await c.submit("bad")
        assert info.value.code == "fn_error"
        assert await c.ping() is None


async def test_healthz_answers_ok_with_the_session_count(serve_app):
    srv = serve_app(echo_app())
    async with aiohttp.ClientSession() as http:
        ws = await open_ws(srv, http)
        async with http.get(srv.url + "/healthz") as resp:
            assert resp.status == 200
            body = await resp.json()
        assert body == {"status": "ok", "sessions": 1, "parked": 0, "pid": os.getpid()}
        await ws.close()


async def test_the_index_page_and_static_files_are_served(serve_app):
    srv = serve_app(echo_app())
    async with aiohttp.ClientSession() as http:
        async with http.get(srv.url + "/") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/html"
            assert "<html" in (await resp.text()).lower()
        async with http.get(srv.url + "/static/index.html") as resp:
            assert resp.status == 200
        async with http.get(srv.url + "/static/../pyproject.toml") as resp:
            assert resp.status in (403, 404)
