"""Shared by the load tester's tests: running ``tether loadtest`` in-process, and a
hand-written server that misbehaves on purpose."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvloop
from aiohttp import WSMsgType, web

from tether.loadtest import main
from tether.protocol import Submit, decode_client, encode_welcome

# The welcome's functions of a raw server by default: the demo's chat.
CHAT: list[dict[str, Any]] = [{"name": "chat", "inputs": ["text"], "outputs": ["chatbot"]}]

Send = Callable[[bytes], Awaitable[None]]
Handler = Callable[[Submit, Send, list[Any]], Awaitable[None]]


def loadtest(url: str, *args: str, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    """``tether loadtest URL ARGS --quiet``: its exit status and its JSON results."""
    out = tmp_path / "result.json"
    status = main([url, "--quiet", "--json", str(out), *args])
    return status, orjson.loads(out.read_bytes())


@pytest.fixture
def raw_server() -> Iterator[Callable[..., str]]:
    """``raw_server(handler, welcome=...)`` serves the protocol by hand, to misbehave on
    purpose: it sends ``welcome`` (by default a right one, listing ``chat``), then gives
    every submit to ``handler(submit, send, history)`` (``history``: the connection's own
    list)."""
    stops: list[Callable[[], None]] = []

    def start(handler: Handler, welcome: bytes | None = None) -> str:
        ready = threading.Event()
        box: dict[str, Any] = {}
        first = welcome if welcome is not None else encode_welcome("raw", CHAT)

        async def ws_handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            await ws.send_frame(first, WSMsgType.TEXT)
            history: list[Any] = []

            async def send(frame: bytes) -> None:
                await ws.send_frame(frame, WSMsgType.TEXT)

            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    message = decode_client(msg.data)
                    if isinstance(message, Submit):
                        await handler(message, send, history)
            return ws

        async def main() -> None:
            app = web.Application()
            app.router.add_get("/ws", ws_handler)
            runner = web.AppRunner(app, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            box["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            box["stop"] = stop = asyncio.Event()
            box["loop"] = asyncio.get_running_loop()
            ready.set()
            await stop.wait()
            await runner.cleanup()

        def run() -> None:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(main())

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert ready.wait(10)

        def stop() -> None:
            box["loop"].call_soon_threadsafe(box["stop"].set)
            thread.join(10)

        stops.append(stop)
        return f"ws://127.0.0.1:{box['port']}/ws"

    yield start
    for stop in stops:
        stop()
