"""SIGTERM while sessions have work in flight: drain, answer everyone, close 1001, exit 0.

The server is a real ``python -m tether serve`` subprocess, as an operator runs it.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import textwrap
from typing import Any

import aiohttp
import orjson

from tests.integration.serve_process import Server, tether_servers  # noqa: F401 -- fixture

SESSIONS = 20
SHUTDOWN_TIMEOUT = 3.0
LONG = 3600.0  # outlives any grace: must end with `shutting_down`

APP = """
import asyncio
import time

import tether

app = tether.App("slow")


@app.function(inputs="number", outputs="number")
def sync_sleep(seconds):
    time.sleep(seconds)
    return seconds


@app.function(inputs="number", outputs="number")
async def async_sleep(seconds):
    await asyncio.sleep(seconds)
    return seconds


@app.on_session_end
def ended(session):
    with open({hook_file!r}, "a") as f:
        f.write(session.id + "\\n")
"""


class Client:
    """A raw session that records every answer and how it was closed."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: str) -> None:
        self.ws = ws
        self.session = session
        self.answers: dict[Any, list[dict[str, Any]]] = {}
        self.close_code: int | None = None

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(orjson.dumps(message).decode())

    async def until_pong(self) -> None:
        """Ping and read up to the pong: every frame sent before it has been handled."""
        await self.send({"type": "ping"})
        while True:
            msg = orjson.loads((await asyncio.wait_for(self.ws.receive(), 30)).data)
            if msg["type"] == "pong":
                return
            self.record(msg)

    def record(self, msg: dict[str, Any]) -> None:
        assert msg["type"] in ("result", "error", "queued", "started"), msg
        if msg["type"] in ("result", "error"):
            self.answers.setdefault(msg["id"], []).append(msg)

    async def read_to_the_end(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.record(orjson.loads(msg.data))
            elif msg.type is aiohttp.WSMsgType.CLOSE:
                self.close_code = msg.data  # the code in the server's close frame
                return
            else:
                raise AssertionError(f"unexpected {msg}")


async def connect(http: aiohttp.ClientSession, url: str) -> Client:
    ws = await http.ws_connect(url)
    welcome = orjson.loads((await asyncio.wait_for(ws.receive(), 30)).data)
    assert welcome["type"] == "welcome"
    return Client(ws, welcome["session"])


async def probe_during_drain(
    http: aiohttp.ClientSession, url: str, proc: subprocess.Popen[str], late: list[Client]
) -> list[str]:
    """Try new connections until the process is gone; what each attempt met."""
    outcomes = []
    while proc.poll() is None:
        try:
            late.append(await connect(http, url))
            outcomes.append("accepted")
        except aiohttp.WSServerHandshakeError as exc:
            outcomes.append(f"http {exc.status}")
        except aiohttp.ClientConnectionError:
            outcomes.append("refused")
        # Only attempts made while the process still ran count as made during the drain.
        if proc.poll() is not None:
            outcomes.pop()
        await asyncio.sleep(0.05)
    return outcomes


async def test_sigterm_drains_in_flight_submits_closes_with_1001_and_exits_0(tmp_path, servers):
    hook_file = tmp_path / "ended.txt"
    (tmp_path / "slowapp.py").write_text(textwrap.dedent(APP.format(hook_file=str(hook_file))))
    server = Server(tmp_path, "slowapp:app", "--shutdown-timeout", str(SHUTDOWN_TIMEOUT))
    servers.append(server)
    server.wait_ready()

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        clients = [await connect(http, server.ws_url) for _ in range(SESSIONS)]
        expected: dict[tuple[int, Any], float] = {}
        for i, client in enumerate(clients):
            work = [("sync_sleep", 0.3 + 0.1 * (i % 8)), ("async_sleep", 1.0 - 0.1 * (i % 8))]
            if i % 5 == 0:
                work.append(("async_sleep", LONG))
            for n, (fn, seconds) in enumerate(work):
                await client.send({"type": "submit", "id": n, "fn": fn, "data": [seconds]})
                expected[(i, n)] = seconds
        # Every submit has reached its session before the signal.
        await asyncio.gather(*(c.until_pong() for c in clients))

        readers = [asyncio.create_task(c.read_to_the_end()) for c in clients]
        late: list[Client] = []
        server.proc.send_signal(signal.SIGTERM)
        probe = asyncio.create_task(probe_during_drain(http, server.ws_url, server.proc, late))
        code = await asyncio.to_thread(server.proc.wait, SHUTDOWN_TIMEOUT + 30)
        outcomes = await asyncio.wait_for(probe, 30)
        await asyncio.wait_for(asyncio.gather(*readers), 30)
        await asyncio.wait_for(asyncio.gather(*(c.read_to_the_end() for c in late)), 30)

    server.stop()
    assert code == 0, server.output
    # Each submit got exactly one answer: its result, or shutting_down if it could not finish.
    results = 0
    for (i, n), seconds in expected.items():
        answers = clients[i].answers.get(n, [])
        assert len(answers) == 1, (i, n, answers)
        (answer,) = answers
        if seconds == LONG:
            assert (answer["type"], answer["code"]) == ("error", "shutting_down"), answer
        elif answer["type"] == "result":
            assert answer["data"] == [seconds]
            results += 1
        else:
            assert answer["code"] == "shutting_down", answer
    assert results > 0, "the drain let no running submit finish"
    # Everyone, including any session accepted before the listener closed, saw 1001.
    assert [c.close_code for c in clients + late] == [1001] * (SESSIONS + len(late))
    # New connections during the drain were refused.
    assert outcomes, "no connection attempt was made while the server drained"
    assert "refused" in outcomes or "http 503" in outcomes, outcomes
    first_refusal = min(outcomes.index(o) for o in ("refused", "http 503") if o in outcomes)
    assert set(outcomes[first_refusal:]) <= {"refused", "http 503"}, outcomes
    # The end hook ran once per session.
    ended = hook_file.read_text().split()
    assert sorted(ended) == sorted(c.session for c in clients + late)
