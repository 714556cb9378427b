"""What saving the session record before each result costs (Redis store, issue 12 item 14).

    python bench/resume_save_cost.py [--seconds 5] [--sessions 50] [--rounds 2]

Starts its own redis-server (a free loopback port, no persistence) and, in turn,
`tether demo --store redis://...` with the default (the record is saved before
a result is sent) and with `--resume-save-after-result true` (sent first, saved
soon after). Each round drives both for the same time with the same closed loop:
S sessions, each sending `chat` submits one at a time, a new session every 20
turns. Prints submits/s per mode (median over rounds, alternating the order) and
the ratio. One machine runs the server, Redis and the driver: a noisy figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import orjson
import websockets

from tether.protocol import encode_submit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


async def session_loop(url: str, stop: float, counts: list[int]) -> None:
    while time.monotonic() < stop:
        async with websockets.connect(url) as ws:
            await ws.recv()  # welcome
            for turn in range(20):
                if time.monotonic() >= stop:
                    return
                await ws.send(encode_submit(turn, "chat", [f"hello {turn}"]).decode())
                while orjson.loads(await ws.recv()).get("id") != turn:
                    pass
                counts[0] += 1


async def drive(url: str, seconds: float, sessions: int) -> float:
    counts = [0]
    start = time.monotonic()
    stop = start + seconds
    await asyncio.gather(*(session_loop(url, stop, counts) for _ in range(sessions)))
    return counts[0] / (time.monotonic() - start)


def run_mode(redis_url: str, after: bool, seconds: float, sessions: int) -> float:
    port = free_port()
    args = [sys.executable, "-m", "tether", "demo", "--port", str(port), "--store", redis_url]
    args += ["--log-level", "warning", "--resume-save-after-result", "true" if after else "false"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        return asyncio.run(drive(f"ws://127.0.0.1:{port}/ws", seconds, sessions))
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    opts = parser.parse_args()
    redis_port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        redis = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_port(redis_port)
            url = f"redis://127.0.0.1:{redis_port}/0"
            rates: dict[bool, list[float]] = {False: [], True: []}
            for round_ in range(opts.rounds):
                order = [False, True] if round_ % 2 == 0 else [True, False]
                for after in order:
                    rates[after].append(run_mode(url, after, opts.seconds, opts.sessions))
        finally:
            redis.terminate()
            redis.wait(30)
    before = statistics.median(rates[False])
    after = statistics.median(rates[True])
    print(f"cpus: {os.cpu_count()}, sessions: {opts.sessions}, {opts.seconds:g} s x {opts.rounds}")
    rounds = {mode: [round(r) for r in rates[mode]] for mode in rates}
    print(f"save before result (default):  {before:8.0f} submits/s  {rounds[False]}")
    print(f"resume_save_after_result=true: {after:8.0f} submits/s  {rounds[True]}")
    print(f"ratio (default / opt-out): {before / after:.2f}")


if __name__ == "__main__":
    main()
