"""Wire bytes per chat reply, with and without output deltas.

    python bench/delta_bytes.py

Starts the demo in-process on a free loopback port, chats 1000 turns on two
raw connections (one with /ws?deltas=1), and prints the size of the result
frame at turns 1, 10, 100 and 1000.
"""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import orjson

from tether.demo import create_app
from tether.settings import Settings
from tether.transport import serve


async def sizes(url: str, turns: int) -> list[int]:
    out = []
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.receive()
        for turn in range(turns):
            await ws.send_str(
                orjson.dumps(
                    {"type": "submit", "id": turn, "fn": "chat", "data": [f"message {turn}"]}
                ).decode()
            )
            msg = await ws.receive()
            out.append(len(msg.data.encode()))
    return out


async def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stop = asyncio.Event()
    ready = asyncio.Event()
    server = asyncio.create_task(
        serve(
            create_app(), "127.0.0.1", port, Settings(), stop=stop, on_ready=lambda *_: ready.set()
        )
    )
    await ready.wait()
    base = f"ws://127.0.0.1:{port}/ws"
    full = await sizes(base, 1000)
    delta = await sizes(base + "?deltas=1", 1000)
    print(f"{'turn':>5} {'full bytes':>11} {'delta bytes':>12}")
    for turn in (1, 10, 100, 1000):
        print(f"{turn:>5} {full[turn - 1]:>11} {delta[turn - 1]:>12}")
    stop.set()
    await server


if __name__ == "__main__":
    asyncio.run(main())
