"""Which client should generate load? tether.Client (websockets) vs the lean aiohttp and
picows clients of the load tester.

Both drive the same closed loop (``track_score`` submits on long sessions)
against one ``tether demo`` server subprocess, in alternating rounds, in this
one process. The figure that matters is the generator's CPU time per submit:
the less a client costs, the more load one generator core can offer before it,
not the server, becomes the bottleneck.

    python bench/clients.py [--sessions 50] [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers

import tether
from tether.loadtest import LeanConnection
from tether.loadtest.stacks import picows_available
from tether.protocol import Result

Submit = Callable[[int], Awaitable[Any]]


async def _drive(open_session: Callable[[], Awaitable[tuple[Submit, Any]]], n: int, seconds: float):
    sessions = [await open_session() for _ in range(n)]
    count = 0
    end = time.monotonic() + seconds

    async def loop(submit: Submit, k: int) -> None:
        nonlocal count
        while time.monotonic() < end:
            await submit(k)
            count += 1

    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.gather(*(loop(submit, k) for k, (submit, _) in enumerate(sessions)))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    for _, close in sessions:
        await close()
    return count / wall, 1e6 * cpu / max(count, 1)


async def tether_client(url: str, n: int, seconds: float) -> tuple[float, float]:
    async def open_session() -> tuple[Submit, Any]:
        client = await tether.connect(url)
        return (lambda k: client.submit("track_score", k)), client.close

    return await _drive(open_session, n, seconds)


async def lean_client(url: str, n: int, seconds: float) -> tuple[float, float]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def open_session() -> tuple[Submit, Any]:
            conn = await LeanConnection.open(http, url, lambda m: None, print)

            async def submit(k: int) -> Any:
                reply = await conn.submit("track_score", [k])
                assert type(reply) is Result, reply
                return reply.data

            return submit, conn.close

        return await _drive(open_session, n, seconds)


async def picows_client(url: str, n: int, seconds: float) -> tuple[float, float]:
    from tether.loadtest.picows_connection import PicowsConnection

    async def open_session() -> tuple[Submit, Any]:
        conn = await PicowsConnection.open(url, lambda m: None, print)

        async def submit(k: int) -> Any:
            reply = await conn.submit("track_score", [k])
            assert type(reply) is Result, reply
            return reply.data

        return submit, conn.close

    return await _drive(open_session, n, seconds)


CLIENTS = {"tether.Client (websockets)": tether_client, "LeanConnection (aiohttp)": lean_client}
if picows_available():
    CLIENTS["PicowsConnection (picows)"] = picows_client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in CLIENTS}
    servers.pin(0, 1 - servers.SERVER_CPU)
    with servers.running("tether-sync") as url:
        for r in range(args.rounds):
            order = list(CLIENTS) if r % 2 == 0 else list(reversed(CLIENTS))
            for name in order:
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    rate, cpu = runner.run(CLIENTS[name](url, args.sessions, args.seconds))
                results[name].append((rate, cpu))
    print(f"{args.sessions} sessions, closed loop, {args.seconds:g} s x {args.rounds} rounds")
    print(f"{'client':30}{'submits/s':>12}{'generator CPU us/submit':>26}")
    for name, rows in results.items():
        rate = statistics.median(r for r, _ in rows)
        cpu = statistics.median(c for _, c in rows)
        print(f"{name:30}{rate:>12.0f}{cpu:>26.1f}")


if __name__ == "__main__":
    main()
