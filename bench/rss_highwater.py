"""Where the RSS high-water mark after a `queue_full` flood comes from (issue 12, "Also").

``python bench/rss_highwater.py [--submits 200000] [--sessions 100] [--idle 10]``
starts ``tether demo`` in a child process (this file's ``serve`` mode: the same
CLI, plus signal hooks), floods ``chat_stream`` (a low concurrency limit, so most
submits are refused with ``queue_full``) from ``--sessions`` pipelining sessions,
and prints the server's RSS: before, after the load, after ``--idle`` seconds
with the sessions closed, and after ``malloc_trim(0)``.

``--exact-frames`` patches, in the served process only, ``ResultLog.record`` to keep
an exact-size copy of each frame (orjson's ``dumps`` returns buffers of 4 KiB and
more even for a 130-byte frame), to measure that fix without editing the server.
``--no-read`` floods from clients that send every submit at once and read
nothing for 5 s, so the answers wait in the server's send queues.

``--trace`` runs the server under ``tracemalloc`` and prints the top
allocation sites that are still alive after the load and after idle, so the
Python-level holders (queues, results kept for resume, frames) show up next to
what the allocator merely keeps. ``--malloc`` runs the server with
``PYTHONMALLOC=malloc`` (glibc for every object, no pymalloc arenas) and
``--arena-max N`` sets ``MALLOC_ARENA_MAX``; ``--env NAME=VALUE`` sets any other
variable of the server (``MALLOC_MMAP_THRESHOLD_=65536``); extra ``--server-arg``s go to
``tether demo``.

The serve mode hooks: SIGUSR1 writes a tracemalloc summary to the file named by
``TETHER_RSS_TRACE_OUT``; SIGUSR2 calls glibc's ``malloc_trim(0)``.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSMsgType

from tether.loadtest import LeanConnection
from tether.protocol import Error, encode_submit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from servers import CAPS, free_port, rss_bytes, wait_healthy  # noqa: E402


def serve(argv: list[str]) -> None:
    """Run ``tether demo`` in this process, with the tracing and trimming hooks."""
    out = os.environ.get("TETHER_RSS_TRACE_OUT", "")
    libc = ctypes.CDLL("libc.so.6")
    first: list[tracemalloc.Snapshot] = []

    def dump(_sig: int, _frame: Any) -> None:
        if not tracemalloc.is_tracing():
            return
        snap = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        current, peak = tracemalloc.get_traced_memory()
        lines = [f"Python heap now {current / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB"]
        if not first:
            first.append(snap)  # the reference: what later snapshots are compared with
        else:
            diffs = snap.compare_to(first[0], "traceback")
            grown = sum(d.size_diff for d in diffs)
            lines.append(f"grown since the first snapshot: {grown / 2**20:+.2f} MiB; largest:")
            for d in diffs[:8]:
                lines.append(f"{d.size_diff / 2**20:+8.2f} MiB {d.count_diff:+8d} blocks")
                lines.extend(f"      {line}" for line in d.traceback.format()[-6:])
        Path(out + ".tmp").write_text("\n".join(lines) + "\n")
        os.replace(out + ".tmp", out)

    def trim(_sig: int, _frame: Any) -> None:
        t0 = time.perf_counter()
        libc.malloc_trim(0)
        print(f"malloc_trim(0) took {1000 * (time.perf_counter() - t0):.1f} ms", flush=True)

    if os.environ.get("TETHER_RSS_EXACT_FRAMES"):
        # The fix this probe recommends, tried without editing the server: the result log
        # keeps an exact-size copy of each frame, not orjson's over-allocated buffer.
        from tether.core.resume import ResultLog

        record = ResultLog.record

        def exact(self: ResultLog, id: Any, frame: bytes) -> None:
            record(self, id, bytes(memoryview(frame)))

        ResultLog.record = exact  # type: ignore[method-assign]

    signal.signal(signal.SIGUSR1, dump)
    signal.signal(signal.SIGUSR2, trim)
    from tether.cli import main

    sys.exit(main(["demo", *argv]))


async def flood_unread(url: str, submits: int, sessions: int, loaded: Any) -> dict[str, int]:
    """Each session sends its share of submits at once and reads nothing until ``loaded()``
    has run (a client that floods and does not read: the server must queue the answers)."""
    async with aiohttp.ClientSession() as http:
        conns = [await http.ws_connect(url, max_msg_size=0) for _ in range(sessions)]
        for n, ws in enumerate(conns):
            for i in range(submits // sessions):
                await ws.send_frame(encode_submit(i, "chat_stream", [f"m{n}-{i}"]), WSMsgType.TEXT)
        await asyncio.sleep(5.0)
        await asyncio.to_thread(loaded)
        closes: dict[str, int] = {}
        for ws in conns:
            await ws.close()
            closes[str(ws.close_code)] = closes.get(str(ws.close_code), 0) + 1
    return closes


async def flood(url: str, submits: int, sessions: int, window: int, loaded: Any) -> dict[str, int]:
    """The load; ``loaded()`` runs once every submit is answered, sessions still open."""
    codes: dict[str, int] = {}
    left = [submits]
    finished = [0]
    close = asyncio.Event()

    async def one(http: aiohttp.ClientSession, n: int) -> None:
        conn = await LeanConnection.open(http, url, lambda _m: None, print, first_id=n << 32)
        sem = asyncio.Semaphore(window)

        async def send(i: int) -> None:
            try:
                reply = await conn.submit("chat_stream", [f"m{n}-{i}"])
                code = reply.code if isinstance(reply, Error) else "result"
            except Exception as exc:
                code = type(exc).__name__
            codes[code] = codes.get(code, 0) + 1
            sem.release()

        tasks = set()
        i = 0
        while left[0] > 0:
            left[0] -= 1
            await sem.acquire()
            t = asyncio.ensure_future(send(i))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            i += 1
        await asyncio.gather(*tasks)
        finished[0] += 1
        if finished[0] == sessions:
            await asyncio.to_thread(loaded)
            close.set()
        await close.wait()
        await conn.close()

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(one(http, n) for n in range(sessions)))
    return codes


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2:])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--submits", type=int, default=200_000)
    p.add_argument("--sessions", type=int, default=100)
    p.add_argument("--window", type=int, default=200, help="submits in flight per session")
    p.add_argument("--idle", type=float, default=10.0)
    p.add_argument("--trace", action="store_true")
    p.add_argument("--exact-frames", action="store_true", help="patch: exact-size logged frames")
    p.add_argument("--no-read", action="store_true", help="clients that send and never read")
    p.add_argument("--malloc", action="store_true")
    p.add_argument("--arena-max", type=int, default=0)
    p.add_argument("--server-arg", action="append", default=[])
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    a = p.parse_args()

    env = dict(os.environ)
    trace_out = Path(tempfile.mkdtemp(prefix="tether-rss-")) / "trace.txt"
    env["TETHER_RSS_TRACE_OUT"] = str(trace_out)
    if a.trace:
        env["PYTHONTRACEMALLOC"] = "8"
    if a.exact_frames:
        env["TETHER_RSS_EXACT_FRAMES"] = "1"
    if a.malloc:
        env["PYTHONMALLOC"] = "malloc"
    if a.arena_max:
        env["MALLOC_ARENA_MAX"] = str(a.arena_max)
    env.update(item.split("=", 1) for item in a.env)  # type: ignore[misc]
    port = free_port()
    cmd = [sys.executable, __file__, "serve", "--port", str(port), "--log-level", "error"]
    proc = subprocess.Popen([*cmd, *CAPS, *a.server_arg], env=env, stdin=subprocess.DEVNULL)
    try:
        wait_healthy(port, proc=proc)
        url = f"ws://127.0.0.1:{port}/ws"

        def rss(label: str) -> None:
            print(f"{label:<28} RSS {rss_bytes(proc.pid) / 2**20:7.1f} MiB", flush=True)

        def trace(label: str) -> None:
            if a.trace:
                trace_out.unlink(missing_ok=True)
                proc.send_signal(signal.SIGUSR1)
                deadline = time.monotonic() + 300
                while not trace_out.exists() and time.monotonic() < deadline:
                    time.sleep(0.5)
                print(f"--- tracemalloc, {label}:\n{trace_out.read_text()}", flush=True)

        rss("started")
        trace("started")
        t0 = time.monotonic()

        def loaded() -> None:
            took = time.monotonic() - t0
            print(f"{a.submits} submits in {took:.1f} s over {a.sessions} sessions")
            rss("after load (sessions open)")
            trace("after load, sessions open")

        if a.no_read:
            codes = asyncio.run(flood_unread(url, a.submits, a.sessions, loaded))
        else:
            codes = asyncio.run(flood(url, a.submits, a.sessions, a.window, loaded))
        print(f"answers: {codes}")
        time.sleep(1.0)
        rss("sessions closed")
        trace("sessions closed")
        time.sleep(a.idle)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            print("healthz", r.read().decode())
        rss(f"after {a.idle:g} s idle")
        trace("after idle")
        proc.send_signal(signal.SIGUSR2)
        time.sleep(0.5)
        rss("after malloc_trim(0)")
    finally:
        proc.terminate()
        proc.wait(15)


if __name__ == "__main__":
    main()
