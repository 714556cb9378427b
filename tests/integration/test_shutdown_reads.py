"""SIGTERM under a steady stream of submits: every submit the server read is answered.

The server keeps reading every connection until its 1001 goes out, so a submit
sent during the drain gets `shutting_down` (or its result), never silence. The
drain is held open by a submit that waits for a file the test writes, so the
streams can be stopped and every answer collected before the 1001: then no
submit is in flight when the close comes, and an unanswered one is a lost one.
"""

from __future__ import annotations

import asyncio
import signal
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.integration.serve_process import Server, tether_servers  # noqa: F401 -- fixture

STREAMS = 4
ANSWER_WAIT = 10.0  # a bound, not a threshold: the fixed server answers at once
AFTER_SIGNAL = 20  # submits each stream sends after its first `shutting_down`

APP = """
import os
import time

import tether

app = tether.App("held")


@app.function(inputs="number", outputs="number")
def echo(n):
    return n


@app.function(inputs="text", outputs="text")
def hold(path):
    # Holds the drain open until the test writes the file (bounded).
    for _ in range(600):
        if os.path.exists(path):
            return "released"
        time.sleep(0.05)
    return "timed out"
"""


async def stream(ws: aiohttp.ClientWebSocketResponse) -> tuple[list[Any], int | None]:
    """Submit one at a time, each after the last was answered, until `AFTER_SIGNAL`
    submits after the first `shutting_down`; returns the unanswered ids and the
    close code, if the server closed meanwhile."""
    unanswered: list[Any] = []
    refused = 0
    n = 0
    while refused < AFTER_SIGNAL:
        n += 1
        await ws.send_str(
            orjson.dumps({"type": "submit", "id": n, "fn": "echo", "data": [n]}).decode()
        )
        try:
            while True:
                msg = await asyncio.wait_for(ws.receive(), ANSWER_WAIT)
                if msg.type is aiohttp.WSMsgType.CLOSE:
                    unanswered.append(n)
                    return unanswered, msg.data
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    unanswered.append(n)
                    return unanswered, None
                answer = orjson.loads(msg.data)
                if answer.get("id") != n or answer["type"] not in ("result", "error"):
                    continue
                if answer["type"] == "error":
                    assert answer["code"] == "shutting_down", answer
                    refused += 1
                else:
                    assert answer["data"] == [n], answer
                break
        except TimeoutError:
            unanswered.append(n)
            return unanswered, None
    return unanswered, None


async def test_sigterm_answers_every_submit_read_during_the_drain(tmp_path: Path, servers):
    (tmp_path / "heldapp.py").write_text(textwrap.dedent(APP))
    release = tmp_path / "release"
    server = Server(tmp_path, "heldapp:app", "--shutdown-timeout", "60")
    servers.append(server)
    server.wait_ready()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        holder = await http.ws_connect(server.ws_url)
        await holder.receive()  # welcome
        await holder.send_str(
            orjson.dumps({"type": "submit", "id": 1, "fn": "hold", "data": [str(release)]}).decode()
        )
        sockets = [await http.ws_connect(server.ws_url) for _ in range(STREAMS)]
        for ws in sockets:
            assert orjson.loads((await ws.receive()).data)["type"] == "welcome"
        streams = [asyncio.create_task(stream(ws)) for ws in sockets]
        await asyncio.sleep(0.2)  # the streams are flowing
        server.proc.send_signal(signal.SIGTERM)
        outcomes = await asyncio.wait_for(asyncio.gather(*streams), 120)
        # Every stream is quiet now: release the drain and read to the 1001.
        release.write_text("go")
        held = orjson.loads((await asyncio.wait_for(holder.receive(), 60)).data)
        codes = []
        for ws in [holder, *sockets]:
            while True:
                msg = await asyncio.wait_for(ws.receive(), 60)
                if msg.type is aiohttp.WSMsgType.CLOSE:
                    codes.append(msg.data)
                    break
                assert msg.type is aiohttp.WSMsgType.TEXT, msg
        code = await asyncio.to_thread(server.proc.wait, 60)
    server.stop()
    assert code == 0, server.output
    assert held["type"] == "result" and held["data"] == ["released"], held
    # Every submit sent was read and answered (nothing was in flight at the 1001).
    assert [unanswered for unanswered, _ in outcomes] == [[]] * STREAMS, outcomes
    assert [close for _, close in outcomes] == [None] * STREAMS, outcomes
    assert codes == [1001] * (STREAMS + 1), codes
