"""The WebSocket transport, driven by a raw aiohttp client that can misbehave."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
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


def bad_input_app() -> App:
    """One function per component, a stateful counter, and two allowed topic patterns."""
    app = App("bad inputs", topics=["news", "room:*"])

    @app.function(inputs=["text", "number"], outputs="json")
    def echo(text, n):
        return {"text": text, "n": n}

    @app.function(inputs="checkbox", outputs="checkbox")
    def flip(on):
        return not on

    @app.function(inputs="json", outputs="json")
    def keep(value):
        return value

    @app.function(inputs="chatbot", outputs="number")
    def turns(history):
        return len(history)

    @app.function(inputs="state", outputs=["number", "state"])
    def count(n=0):
        return n + 1, n + 1

    return app


BAD_INPUTS_PATH = Path(__file__).parents[1] / "data" / "bad_inputs.json"


def load_bad_inputs() -> list[dict[str, Any]]:
    """The rows of tests/data/bad_inputs.json.

    Each row has a ``name``, one frame -- ``frame`` (a text frame),
    ``frame_hex`` with ``opcode`` "text" or "binary" (raw bytes, e.g. invalid
    UTF-8), or ``frame_parts`` (a text frame built from ``[piece, times]``
    pairs, for inputs too big to spell out) -- optional server ``settings``,
    and ``expect``: ``{"error": code, "id": id, ...}`` (any other keys must
    match the reply too), ``{"close": code}``, or ``{"reply": message}`` for
    odd but valid input (``null``: no reply at all).
    """
    rows: list[dict[str, Any]] = orjson.loads(BAD_INPUTS_PATH.read_bytes())
    names = [row["name"] for row in rows]
    assert len(names) == len(set(names)), "bad input names must be unique"
    for row in rows:
        assert sum(k in row for k in ("frame", "frame_hex", "frame_parts")) == 1, row["name"]
        assert len(row["expect"].keys() & {"error", "close", "reply"}) == 1, row["name"]
    return rows


BAD_INPUTS = load_bad_inputs()


async def send_bad_input(ws: aiohttp.ClientWebSocketResponse, row: dict[str, Any]) -> None:
    if "frame" in row:
        await ws.send_str(row["frame"])
    elif "frame_parts" in row:
        await ws.send_str("".join(piece * times for piece, times in row["frame_parts"]))
    elif row["opcode"] == "text":
        await ws.send_frame(bytes.fromhex(row["frame_hex"]), aiohttp.WSMsgType.TEXT)
    else:
        await ws.send_bytes(bytes.fromhex(row["frame_hex"]))


async def call(ws: aiohttp.ClientWebSocketResponse, id: Any, fn: str, *data: Any) -> Any:
    """Submit and return the first reply, which must be the result of this very submit."""
    await ws.send_str(orjson.dumps({"type": "submit", "id": id, "fn": fn, "data": data}).decode())
    reply = await receive(ws)
    assert reply["type"] == "result" and reply["id"] == id, reply
    return reply["data"][0]


def test_the_bad_input_table_covers_every_kind_of_refusal():
    expects = [row["expect"] for row in BAD_INPUTS]
    assert len(BAD_INPUTS) >= 40
    codes = {e.get("error") for e in expects} | {e.get("close") for e in expects}
    assert codes >= {"bad_json", "bad_message", "unknown_fn", "bad_arguments", "forbidden_topic"}
    assert codes >= {1007, 1009}


@pytest.mark.parametrize("row", [pytest.param(row, id=row["name"]) for row in BAD_INPUTS])
async def test_a_bad_input_gets_its_documented_answer_and_harms_no_session(serve_app, row):
    srv = serve_app(bad_input_app(), **row.get("settings", {}))
    expect = row["expect"]
    async with aiohttp.ClientSession() as http:
        bystander = await open_ws(srv, http)
        ws = await open_ws(srv, http)
        assert await call(bystander, "b1", "count") == 1
        assert await call(ws, "w1", "count") == 1
        await send_bad_input(ws, row)
        if "close" in expect:
            msg = await asyncio.wait_for(ws.receive(), 10)
            assert msg.type is aiohttp.WSMsgType.CLOSE, msg
            assert ws.close_code == expect["close"]
        else:
            if "error" in expect:
                reply = await receive(ws)
                extra = {k: v for k, v in expect.items() if k not in ("error", "id")}
                assert set(reply) == {"type", "id", "code", "message", *extra}, reply
                assert (reply["type"], reply["code"]) == ("error", expect["error"])
                assert reply["id"] == expect["id"] and type(reply["id"]) is type(expect["id"])
                assert isinstance(reply["message"], str) and reply["message"]
                assert {k: reply[k] for k in extra} == extra
            elif expect["reply"] is not None:
                assert await receive(ws) == expect["reply"]
            # Nothing else was sent: the next reply is this submit's, and the state survived.
            assert await call(ws, "w2", "count") == 2
            assert await call(ws, "w3", "echo", "ok", 2) == {"text": "ok", "n": 2}
            await ws.close()
        assert await call(bystander, "b2", "count") == 2
        assert await call(bystander, "b3", "echo", "still here", 1) == {
            "text": "still here",
            "n": 1,
        }
        await bystander.close()


async def test_unknown_fields_are_ignored(serve_app):
    srv = serve_app(echo_app())
    async with aiohttp.ClientSession() as http:
        ws = await open_ws(srv, http)
        await ws.send_str('{"type":"submit","id":1,"fn":"echo","data":["a",1],"trace":"t-1"}')
        assert (await receive(ws))["type"] == "result"
        await ws.send_str('{"type":"ping","extra":{"x":1}}')
        assert await receive(ws) == {"type": "pong"}
        await ws.close()


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


def stream_app() -> App:
    app = App("stream")

    @app.function(inputs=["number", "number"], outputs="text")
    def stream(count, size):
        """Yield ``count`` texts of ``size`` bytes, numbered."""
        for i in range(int(count)):
            yield f"{i}:" + "x" * int(size)

    return app


async def submit_stream(
    ws: aiohttp.ClientWebSocketResponse, id: int, count: int, size: int
) -> None:
    await ws.send_str(
        orjson.dumps({"type": "submit", "id": id, "fn": "stream", "data": [count, size]}).decode()
    )


async def test_a_reader_that_falls_behind_gets_every_frame_in_order_then_direct_writes_resume(
    serve_app,
):
    # 300 frames of 32 KiB: more than the client's and the kernel's buffers hold, so
    # the server's frames queue behind a writer task until the client reads again.
    srv = serve_app(stream_app())

    def connection() -> Any:
        (conn,) = srv.server.connections.values()
        return conn

    async with aiohttp.ClientSession() as http:
        ws = await open_ws(srv, http)
        await submit_stream(ws, 1, 300, 32768)
        for _ in range(400):
            if srv.call(lambda: connection()._writer is not None):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the server never queued a frame for the stalled reader")
        seen = []
        while True:
            msg = await receive(ws)
            if msg["type"] == "result":
                break
            assert msg["type"] == "partial", msg
            seen.append(int(msg["data"][0].split(":")[0]))
        assert seen == list(range(300))
        assert msg["data"][0].startswith("299:")
        for _ in range(200):
            if srv.call(lambda: connection()._writer is None):
                break
            await asyncio.sleep(0.05)
        assert srv.call(lambda: connection()._writer is None)
        await submit_stream(ws, 2, 2, 10)
        frames = [await receive(ws) for _ in range(3)]
        assert [f["type"] for f in frames] == ["partial", "partial", "result"]
        assert srv.call(lambda: connection()._writer is None)  # written directly
        await ws.close()


async def test_with_compression_on_frames_go_through_aiohttp_compressed(serve_app):
    srv = serve_app(stream_app(), compression=True)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(srv.ws_url, compress=15)
        assert ws.compress == 15  # permessage-deflate was negotiated
        assert (await receive(ws))["type"] == "welcome"
        await submit_stream(ws, 1, 20, 50000)
        frames = [await receive(ws) for _ in range(21)]
        assert [f["type"] for f in frames] == ["partial"] * 20 + ["result"]
        assert [int(f["data"][0].split(":")[0]) for f in frames[:20]] == list(range(20))
        await ws.close()


def test_the_listening_socket_has_the_configured_backlog(serve_app):
    srv = serve_app(echo_app(), listen_backlog=777)
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{srv.port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    # For a listening socket, ss's Send-Q column is its backlog.
    assert int(out[2]) == min(777, somaxconn), out


async def test_connections_writers_share_what_a_server_writer_never_uses_alone(serve_app):
    # Per-connection memory: the masking bits (a server never masks) and the set of
    # large compressed sends' tasks are one for every connection (compression still
    # works: the test above sends frames large enough to be compressed in a task).
    srv = serve_app(echo_app())
    async with aiohttp.ClientSession() as http:
        first, second = await open_ws(srv, http), await open_ws(srv, http)

        def parts() -> list[tuple[Any, Any]]:
            return [
                (conn.ws._writer.get_random_bits, conn.ws._writer._background_tasks)
                for conn in srv.server.connections.values()
            ]

        (bits, tasks), (bits2, tasks2) = srv.call(parts)
        assert bits is bits2 and tasks is tasks2 and tasks == set()
        assert await call(first, 1, "echo", "a", 2) == {"text": "a", "n": 2}
        await first.close()
        await second.close()
