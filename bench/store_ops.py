"""Cost per leaderboard operation against board size (issue 13), memory and Redis.

    python bench/store_ops.py [--sizes 1000,10000,100000,1000000] [--redis-max 1000000]
                              [--base /work/base-13] [--rounds 5] [--calls 200]

For each backend and size N: fill one board with N members (member ``m<i>``,
score ``i``; Redis through pipelined ZADDs), then time ``lb_rank`` and
``lb_score`` of members in the top quarter, ``lb_top(10)``, and last
``lb_add(new member, random score below N, keep=N, top=3)`` (the board stays at
N: each add drops the worst). Each figure is the median over ``--rounds`` rounds
of the mean of up to ``--calls`` calls (fewer when one call is slow), in µs.
Prints a table and the growth 1k -> 100k per operation (the goal is <= 3x).

Redis is a ``redis-server`` of its own (free loopback port, no persistence),
reached through ``RedisBackend``: its figures are mostly the loopback round trip.
``--base TREE`` also runs the memory backend of another checkout (its
``server/`` on PYTHONPATH, in a subprocess running this file with ``--child``),
to show before and after in one run. One shared machine: noisy figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

OPS = ["lb_add", "lb_rank", "lb_top", "lb_score"]
FILL_CHUNK = 10_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def timed(call: Callable[[int], Awaitable[Any]], rounds: int, calls: int) -> float:
    """Median over rounds of the mean seconds per call; ``call(i)`` gets a fresh index."""
    index = 0
    start = time.perf_counter()
    await call(index)
    first = time.perf_counter() - start
    per_round = max(1, min(calls, int(0.05 / max(first, 1e-9))))
    means = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            index += 1
            await call(index)
        means.append((time.perf_counter() - start) / per_round)
    return statistics.median(means)


async def fill(backend: Any, kind: str, size: int) -> None:
    if kind == "memory":
        for i in range(size):
            await backend.lb_add("b", f"m{i}", i)
        return
    from tether.cluster.channels import board_key

    key = board_key(backend.namespace, "b")
    client = backend._client  # the backend's own pool: one ZADD per chunk, pipelined
    await client.delete(key)
    async with client.pipeline(transaction=False) as pipe:
        for lo in range(0, size, FILL_CHUNK):
            pipe.zadd(key, {f"m{i}": i for i in range(lo, min(lo + FILL_CHUNK, size))})
        await pipe.execute()


async def measure(backend: Any, kind: str, size: int, rounds: int, calls: int) -> dict[str, float]:
    await fill(backend, kind, size)
    rng = random.Random(size)
    high = [f"m{rng.randrange(size * 3 // 4, size)}" for _ in range(1024)]

    async def rank(i: int) -> None:
        assert await backend.lb_rank("b", high[i % 1024]) is not None

    async def score(i: int) -> None:
        assert await backend.lb_score("b", high[i % 1024]) is not None

    async def top(_: int) -> None:
        assert len(await backend.lb_top("b", 10)) == 10

    async def add(i: int) -> None:
        await backend.lb_add("b", f"new{i}", rng.randrange(size // 2), keep=size, top=3)

    out = {}
    for op, call in (("lb_rank", rank), ("lb_score", score), ("lb_top", top), ("lb_add", add)):
        out[op] = await timed(call, rounds, calls) * 1e6
    assert await backend.lb_rank("b", f"m{size - 1}") == 0
    await backend.delete("b")
    return out


async def run_memory(sizes: list[int], rounds: int, calls: int) -> dict[int, dict[str, float]]:
    from tether.store import MemoryBackend

    return {n: await measure(MemoryBackend(), "memory", n, rounds, calls) for n in sizes}


async def measure_redis(url: str, sizes: list[int], rounds: int, calls: int) -> dict[int, Any]:
    from tether.store.redis_backend import RedisBackend

    backend = RedisBackend(url, "bench")
    try:
        for _ in range(200):
            if await backend.ping():
                break
            await asyncio.sleep(0.05)
        return {n: await measure(backend, "redis", n, rounds, calls) for n in sizes}
    finally:
        await backend.close()


def run_redis(sizes: list[int], rounds: int, calls: int) -> dict[int, dict[str, float]]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--dir", tmp]
        server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"redis://127.0.0.1:{port}/0"
            return asyncio.run(measure_redis(url, sizes, rounds, calls))
        finally:
            server.terminate()
            server.wait(10)


def run_base(tree: str, sizes: list[int], rounds: int, calls: int) -> dict[int, dict[str, float]]:
    env = dict(os.environ, PYTHONPATH=str(Path(tree) / "server"))
    argv = [sys.executable, __file__, "--child", "--sizes", ",".join(map(str, sizes))]
    argv += ["--rounds", str(rounds), "--calls", str(calls)]
    out = subprocess.run(argv, env=env, check=True, capture_output=True).stdout
    return {int(n): row for n, row in orjson.loads(out).items()}


def report(name: str, rows: dict[int, dict[str, float]]) -> None:
    print(f"\n{name}: µs per operation (median)")
    print(f"{'members':>10} " + " ".join(f"{op:>10}" for op in OPS))
    for n, row in rows.items():
        print(f"{n:>10} " + " ".join(f"{row[op]:>10.2f}" for op in OPS))
    if 1000 in rows and 100_000 in rows:
        growth = {op: rows[100_000][op] / rows[1000][op] for op in OPS}
        verdict = "ok" if max(growth.values()) <= 3 else "OVER 3x"
        print("growth 1k->100k: " + "  ".join(f"{op} {g:.2f}x" for op, g in growth.items()), end="")
        print(f"  ({verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--redis-max", type=int, default=1_000_000, help="largest Redis size")
    parser.add_argument("--base", help="another checkout whose memory backend to measure too")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.child:
        rows = asyncio.run(run_memory(sizes, args.rounds, args.calls))
        sys.stdout.buffer.write(orjson.dumps({str(n): row for n, row in rows.items()}))
        return
    import tether

    print(f"tether from {Path(tether.__file__).parent}; python {sys.version.split()[0]}")
    print(f"rounds {args.rounds}, up to {args.calls} calls each; lb_add is keep=N, top=3")
    if args.base:
        report(f"memory, base ({args.base})", run_base(args.base, sizes, args.rounds, args.calls))
    report("memory", asyncio.run(run_memory(sizes, args.rounds, args.calls)))
    if not args.no_redis:
        redis_sizes = [n for n in sizes if n <= args.redis_max]
        report("redis", run_redis(redis_sizes, args.rounds, args.calls))


if __name__ == "__main__":
    main()
