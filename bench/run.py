"""tether's benchmark: one command, figures as ratios against a bare baseline.

    python bench/run.py                    # the full run (`make bench`), a few minutes
    python bench/run.py --quick            # tiny sizes, a few seconds (the smoke test)
    python bench/run.py --only fanout,wire # some sections only (not for the README)

Sections:

- throughput: a bare aiohttp + uvloop server (inline, and with
  ``run_in_executor``) against tether's demo ``chat`` (sync, session state)
  and an async variant, at C concurrent clients, in alternating rounds. Every
  row uses the same load generator (``tether loadtest --scenario chat``, one
  process) for the same duration. Servers run on one core, the generator on
  the other. Medians over rounds. Every row records its generator's CPU; a
  row whose generator used more than 90% of its core measured the generator,
  so it gets no ratio (nor do the rows compared with it).
- generator: does the load generator out-run what it measures? ``tether
  loadtest`` (picows and aiohttp stacks) against a picows reference client,
  all against the bare inline baseline (``generator.py``), in alternating
  rounds; the ratio loadtest ÷ reference, and each row's generator CPU.
- memory: idle memory per session: RSS growth of the server process divided
  by the number of open, idle sessions.
- fanout: one publish to N subscribers (10,000; each its own session, held
  by processes on the generator core), from the submit that publishes until
  the last subscriber's socket has the event; tether (``servers:fanout_app``)
  against a bare aiohttp + uvloop fan-out, in alternating rounds.
- wire: the bytes of the demo ``chat``'s reply at turns 1, 100 and 1000 of
  one conversation, with and without output deltas (``/ws?deltas=1``).
- cold_start: ``tether demo`` until ``/healthz`` answers; ``import tether``.
- turn_cost: one session's chat turn at turns 10, 100 and 1000, round trip and
  server CPU per submit, deltas on and off (``turn_cost.py``).
- global_state: the demo's ``track_score`` ÷ its ``chat`` at C=100, on the
  memory store and on Redis (``global_state.py``).

Results go to ``bench/results/<date>.json``; ``--update-readme`` also
rewrites the summary in ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import generator  # noqa: E402
import global_state  # noqa: E402
import servers  # noqa: E402
import turn_cost  # noqa: E402

from tether.protocol import (  # noqa: E402
    Event,
    Result,
    ServerMessage,
    Subscribed,
    Welcome,
    decode_server,
    decode_welcome,
    encode_submit,
    encode_subscribe,
)
from tether.server.tuning import raise_open_files_limit  # noqa: E402

GENERATOR_CPU = 1 - servers.SERVER_CPU
# Above this share of its core a generator measures itself (tether.loadtest.report agrees).
SATURATED_PERCENT = 90.0
BASELINES = ("baseline-inline", "baseline-executor")
TETHERS = ("tether-sync", "tether-async")
README = HERE / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {
            "rounds": 1,
            # Long enough that a loaded machine (a CI run) still completes submits.
            "seconds": 1.0,
            "concurrency": [10],
            "turns": 5,
            "sessions": [20, 100],
            "cold_repeats": 1,
            "settle": 0.1,
            "subscribers": 50,
            "fanout_rounds": 2,
            "wire_turns": [1, 10],
            "latency_users": 10,
            "latency_rates": [200],
            "generator_users": 10,
            "generator_seconds": 2.0,
            "generator_rounds": 1,
        }
    return {
        "rounds": 3,
        "seconds": 5.0,
        "concurrency": [1, 10, 100, 1000],
        "turns": 20,
        "sessions": [5000, 20000],
        "cold_repeats": 5,
        "settle": 1.0,
        "subscribers": 10000,
        "fanout_rounds": 5,
        "wire_turns": [1, 100, 1000],
        "latency_users": 100,
        "latency_rates": [2000, 5000],
        "generator_users": 100,
        "generator_seconds": 5.0,
        "generator_rounds": 3,
    }


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- throughput ------------------------------------------------------------------


def loadtest(
    url: str, users: int, seconds: float, turns: int, rate: float | None = None
) -> dict[str, Any]:
    """One row: the real `tether loadtest` in its own process, on the generator core
    (closed loop; open loop at ``rate`` submits/s in all if given)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [
            sys.executable, "-m", "tether", "loadtest", url,
            "--users", str(users), "--duration", str(seconds), "--scenario", "chat",
            "--turns", str(turns), "--quiet", "--json", str(out),
        ]  # fmt: skip
        if rate:
            cmd += ["--rate", str(rate)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        servers.pin(proc.pid, GENERATOR_CPU)
        try:
            proc.wait(timeout=seconds + 120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        if not out.exists():
            raise RuntimeError(f"loadtest exited with {proc.returncode} and wrote no result")
        result: dict[str, Any] = orjson.loads(out.read_bytes())
    return {
        "throughput": result["throughput"],
        "p50_ms": result["latency_ms"]["p50"],
        "p99_ms": result["latency_ms"]["p99"],
        "max_ms": result["latency_ms"]["max"],
        "errors": result["error_count"],
        "error_codes": result["errors"],
        "generator_cpu_percent": result["generator_cpu_percent"][0],
        "generator_saturated": result["generator_saturated"],
        "ok": round(result["throughput"] * result["elapsed_s"]),
    }


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU of a server process, all its threads, so far (``/proc/<pid>/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alternating_rounds(
    size: dict[str, Any],
    kinds: list[str],
    key: str,
    levels: list[Any],
    row_at: Callable[[str, Any], dict[str, Any]],
    describe: Callable[[dict[str, Any]], str],
) -> list[dict[str, Any]]:
    """Every server at every level, in ``size["rounds"]`` rounds; each round starts
    the servers afresh and rotates their order per level. ``row_at(url, level)``
    measures one row, which gets ``round``, ``server`` and ``key`` = level, and, when
    it counts its successful submits (``ok``), the server's CPU per submit over the row
    (``server_cpu_us``: all the server's threads, connects and closes included)."""
    rows: list[dict[str, Any]] = []
    for r in range(size["rounds"]):
        running = {kind: servers.start(kind) for kind in kinds}
        try:
            for li, level in enumerate(levels):
                shift = (r + li) % len(kinds)
                for kind in kinds[shift:] + kinds[:shift]:
                    before = server_cpu_seconds(running[kind].pid)
                    row = row_at(running[kind].url, level)
                    spent = server_cpu_seconds(running[kind].pid) - before
                    if row.get("ok"):
                        row["server_cpu_us"] = round(spent * 1e6 / row["ok"], 1)
                    row.update({"round": r, "server": kind, key: level})
                    rows.append(row)
                    log(f"round {r + 1}/{size['rounds']}  {describe(row)}")
        finally:
            for server in running.values():
                server.stop()
    return rows


def by_level(
    rows: list[dict[str, Any]], kinds: list[str], key: str, levels: list[Any]
) -> Iterator[tuple[Any, dict[str, list[dict[str, Any]]]]]:
    """For each level, the rows of each server that has any there."""
    for level in levels:
        found = {
            kind: [r for r in rows if r["server"] == kind and r[key] == level] for kind in kinds
        }
        yield level, {kind: mine for kind, mine in found.items() if mine}


def median(mine: list[dict[str, Any]], field: str, digits: int = 3) -> float:
    return round(statistics.median(r[field] for r in mine), digits)


def throughput(size: dict[str, Any], kinds: list[str]) -> dict[str, Any]:
    rows = alternating_rounds(
        size,
        kinds,
        "clients",
        size["concurrency"],
        lambda url, c: loadtest(url, c, size["seconds"], size["turns"]),
        lambda row: (
            f"C={row['clients']:<5} {row['server']:18} "
            f"{row['throughput']:9.0f} submits/s  p50 {row['p50_ms']:7.2f} ms  "
            f"p99 {row['p99_ms']:7.2f} ms  generator CPU {row['generator_cpu_percent']:.0f}%"
        ),
    )
    return {"rows": rows, "summary": summarize(rows, kinds, size["concurrency"])}


def latency(size: dict[str, Any], kinds: list[str]) -> dict[str, Any]:
    """Latency below saturation: open loop at fixed rates that every server can carry.

    At saturation a closed loop's latency is set by its concurrency (Little's law:
    mean latency = C / throughput), so the throughput rows cannot say how fast a
    submit is answered; these rows can.
    """
    users = size["latency_users"]
    rows = alternating_rounds(
        size,
        kinds,
        "rate",
        size["latency_rates"],
        lambda url, rate: {
            **loadtest(url, users, size["seconds"], size["turns"], rate),
            "clients": users,
        },
        lambda row: (
            f"{row['rate']:>6} submits/s {row['server']:18} "
            f"p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms  "
            f"max {row['max_ms']:7.2f} ms  (carried {row['throughput']:.0f}/s)"
        ),
    )
    return {"rows": rows, "summary": summarize_latency(rows, kinds, size["latency_rates"])}


def summarize_latency(
    rows: list[dict[str, Any]], kinds: list[str], rates: list[float]
) -> list[dict[str, Any]]:
    """Medians over rounds per (rate, server), and p99 divided by the inline baseline's."""
    out = []
    for rate, found in by_level(rows, kinds, "rate", rates):
        medians = {
            kind: {
                "rate": rate,
                "server": kind,
                "carried": median(mine, "throughput", 1),
                "p50_ms": median(mine, "p50_ms"),
                "p99_ms": median(mine, "p99_ms"),
                "max_ms": median(mine, "max_ms"),
                "errors": sum(r["errors"] for r in mine),
                "generator_cpu_percent": median(mine, "generator_cpu_percent", 1),
                "generator_saturated": saturated(mine),
            }
            for kind, mine in found.items()
        }
        base = medians.get("baseline-inline")
        for entry in medians.values():
            if base and base["p99_ms"] > 0:
                valid = not (entry["generator_saturated"] or base["generator_saturated"])
                entry["p99_vs_baseline-inline"] = (
                    round(entry["p99_ms"] / base["p99_ms"], 2) if valid else None
                )
            out.append(entry)
    return out


def summarize(rows: list[dict[str, Any]], kinds: list[str], levels: list[int]) -> list[Any]:
    """Medians over rounds per (clients, server), and the throughput ratios to the baselines."""
    out = []
    for c, found in by_level(rows, kinds, "clients", levels):
        medians = {
            kind: {
                "clients": c,
                "server": kind,
                "throughput": median(mine, "throughput", 1),
                "throughput_range": [
                    min(r["throughput"] for r in mine),
                    max(r["throughput"] for r in mine),
                ],
                "p50_ms": median(mine, "p50_ms"),
                "p99_ms": median(mine, "p99_ms"),
                "errors": sum(r["errors"] for r in mine),
                "error_codes": dict(
                    sum((Counter(r.get("error_codes", {})) for r in mine), Counter())
                ),
                "generator_cpu_percent": median(mine, "generator_cpu_percent", 1),
                "generator_cpu_range": [
                    min(r["generator_cpu_percent"] for r in mine),
                    max(r["generator_cpu_percent"] for r in mine),
                ],
                "generator_saturated": saturated(mine),
                "server_cpu_us": (
                    median(mine, "server_cpu_us", 1)
                    if all("server_cpu_us" in r for r in mine)
                    else None
                ),
            }
            for kind, mine in found.items()
        }
        for entry in medians.values():
            for base in BASELINES:
                cost, base_cost = entry["server_cpu_us"], medians.get(base, {}).get("server_cpu_us")
                if cost and base_cost:
                    # What the row's server would carry with a core to itself, as a share
                    # of what the baseline would: the baseline's CPU per submit over the
                    # row's. It holds when the generator, not the server, set the pace.
                    entry[f"capacity_vs_{base}"] = round(base_cost / cost, 3)
                if base not in medians or medians[base]["throughput"] <= 0:
                    continue
                if entry["generator_saturated"] or medians[base]["generator_saturated"]:
                    # A saturated generator's figure is its own ceiling, not the server's.
                    entry[f"vs_{base}"] = None
                    continue
                ratio = entry["throughput"] / medians[base]["throughput"]
                entry[f"vs_{base}"] = round(ratio, 3)
            out.append(entry)
    return out


def saturated(mine: list[dict[str, Any]]) -> bool:
    """Whether the generator of any of these rows (rounds) was above SATURATED_PERCENT."""
    return any(
        r.get("generator_saturated") or r["generator_cpu_percent"] > SATURATED_PERCENT for r in mine
    )


def ratio_cell(entry: dict[str, Any], key: str) -> str:
    """A ratio for the table: the figure, "generator saturated" when it would measure the
    generator, empty when there is none to show."""
    if key not in entry:
        return ""
    return "generator saturated" if entry[key] is None else str(entry[key])


# -- memory ------------------------------------------------------------------------


async def _hold(url: str, count: int) -> None:
    """Open ``count`` idle sessions, say so on stdout, and keep them until stdin closes."""
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        sockets: list[Any] = []
        batch = 200
        for start in range(0, count, batch):
            opened = await asyncio.gather(
                *(http.ws_connect(url) for _ in range(min(batch, count - start)))
            )
            for ws in opened:
                await ws.receive()  # the welcome: the session exists
            sockets.extend(opened)
        print(f"ready {len(sockets)}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for ws in sockets:
            await ws.close()


def hold_sessions(
    url: str, count: int, procs: int, mode: str = "--hold"
) -> list[subprocess.Popen[str]]:
    """Start ``procs`` holder processes (``--hold``: idle sessions, ``--subscribe``:
    subscribers) with ``count`` sessions between them; return once all are open."""
    holders = []
    shares = [count // procs + (1 if k < count % procs else 0) for k in range(procs)]
    for share in shares:
        holder = subprocess.Popen(
            [sys.executable, __file__, mode, url, str(share)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        servers.pin(holder.pid, GENERATOR_CPU)
        holders.append(holder)
    for holder in holders:
        assert holder.stdout is not None
        line = holder.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"a session holder failed: {line!r}")
    return holders


def release(holders: list[subprocess.Popen[str]]) -> None:
    for holder in holders:
        with contextlib.suppress(OSError):
            assert holder.stdin is not None
            holder.stdin.close()
    for holder in holders:
        try:
            holder.wait(timeout=60)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()


def settled_rss(pid: int, settle: float) -> int:
    time.sleep(settle)
    return servers.rss_bytes(pid)


def memory(size: dict[str, Any], kinds: list[str], fd_limit: int) -> dict[str, Any]:
    # The server needs a descriptor per session plus a few of its own.
    levels = [min(n, fd_limit - 100) for n in size["sessions"]]
    out: dict[str, Any] = {"requested": size["sessions"], "sessions": levels, "servers": {}}
    for kind in kinds:
        server = servers.start(kind)
        holders: list[subprocess.Popen[str]] = []
        try:
            release(hold_sessions(server.url, 10, 1))  # warm up the code paths once
            before = settled_rss(server.pid, size["settle"])
            results = []
            opened = 0
            for n in levels:
                holders += hold_sessions(server.url, n - opened, 2 if n - opened > 1000 else 1)
                opened = n
                rss = settled_rss(server.pid, size["settle"])
                per = (rss - before) / n
                results.append({"sessions": n, "rss_bytes": rss, "bytes_per_session": round(per)})
                log(f"memory  {kind:18} {n:>6} idle sessions: {per / 1024:7.1f} KiB each")
            out["servers"][kind] = {"rss_before_bytes": before, "levels": results}
        finally:
            release(holders)
            server.stop()
    return out


# -- fan-out ----------------------------------------------------------------------------

# When did a subscriber get the event? The holder processes cannot say by reading
# the clock when they read it: all of them share one core, which reads some 90,000
# events/s, and then their backlog, not the server, would be what is measured. So
# they ask the kernel to stamp every packet as it enters the subscriber socket
# (SO_TIMESTAMPNS: on loopback, that is during the server's write) and read the
# stamps with the data. The stamps are CLOCK_REALTIME, the submit that publishes is
# timed with time.time() (the same clock) in the main process: this compares clock
# readings of different processes and of the kernel, which is valid because the
# clock is system-wide on Linux. (An NTP step in the middle of a round would make
# that round an outlier; rounds last well under a second.)
# Linux's SO_TIMESTAMPNS (asm-generic: x86-64, arm64): a struct timespec, on 64-bit
# systems two 64-bit integers. Where setting it fails, a holder uses its read times.
SO_TIMESTAMPNS = 35
SUBSCRIBERS_PER_HOLDER = 2500
FANOUT_WAIT = 30.0  # seconds a holder waits for every subscriber's copy of one event
CONNECT_BATCH = 100  # connects in flight at once (the servers' listen backlog is 128)


class _Subscriber:
    """One subscriber on a minimal WebSocket client over a non-blocking socket (RFC 6455,
    unfragmented frames, no extensions): aiohttp's client hides the packets' stamps."""

    def __init__(self, sock: socket.socket, on_event: Any) -> None:
        self.sock = sock
        self.on_event = on_event
        self.buffer = bytearray()
        self.upgraded = False
        # What the server said (but events), or a str: what went wrong.
        self.messages: asyncio.Queue[ServerMessage | str] = asyncio.Queue()

    def send(self, payload: bytes, opcode: int = 0x1) -> None:
        """One masked frame (a client must mask) of under 64 KiB; ours are tiny, so
        the socket's buffer always has room."""
        mask = os.urandom(4)
        n = len(payload)
        head = bytes((0x80 | opcode, 0x80 | n)) if n < 126 else bytes((0x80 | opcode, 0xFE))
        size = n.to_bytes(2, "big") if n >= 126 else b""
        body = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        with contextlib.suppress(OSError):
            self.sock.send(head + size + mask + body)

    def readable(self) -> None:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(1 << 16, socket.CMSG_SPACE(16))
        except BlockingIOError:
            return
        except OSError:
            data, ancillary = b"", []
        if not data:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.messages.put_nowait("connection lost")
            return
        stamp = None
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                seconds, nanoseconds = struct.unpack("qq", value[:16])
                stamp = seconds + nanoseconds / 1e9
        buf = self.buffer
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            if not status.startswith(b"HTTP/1.1 101"):
                self.messages.put_nowait(f"refused: {status.decode()}")
                return
            del buf[: end + 4]
            self.upgraded = True
        while len(buf) >= 2:
            n, start = buf[1] & 0x7F, 2  # frames from a server are not masked
            if n >= 126:
                start = 4 if n == 126 else 10
                if len(buf) < start:
                    return
                n = int.from_bytes(buf[2:start], "big")
            if len(buf) < start + n:
                return
            opcode, payload = buf[0] & 0x0F, bytes(buf[start : start + n])
            del buf[: start + n]
            if opcode == 0x1:
                message = decode_server(payload)
                if type(message) is Event:
                    self.on_event(message.data["round"], stamp)
                elif message is not None:
                    self.messages.put_nowait(message)
            elif opcode == 0x9:  # ping: answer it, or the server drops the connection
                self.send(payload, 0xA)

    def close(self) -> None:
        """Close with 1000, so that tether ends the session at once (after a bare TCP
        close it would keep the session for a resume)."""
        with contextlib.suppress(OSError, ValueError):
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.send((1000).to_bytes(2, "big"), 0x8)
        self.sock.close()


async def _subscribe(url: str, on_event: Any) -> _Subscriber:
    """Open a session on the minimal client and subscribe it to the fan-out topic."""
    import base64
    from urllib.parse import urlsplit

    where = urlsplit(url)
    host, port = where.hostname or "127.0.0.1", where.port or 80
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, (host, port))
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {where.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
    except BaseException:
        sock.close()
        raise
    sub = _Subscriber(sock, on_event)
    loop.add_reader(sock.fileno(), sub.readable)
    welcome = await sub.messages.get()
    sub.send(encode_subscribe(servers.FANOUT_TOPIC))
    reply = await sub.messages.get()
    if type(welcome) is not Welcome or type(reply) is not Subscribed:
        sub.close()
        raise RuntimeError(f"subscribing failed: {welcome!r:.100} then {reply!r:.100}")
    return sub


async def _hold_subscribers(url: str, count: int) -> None:
    """Hold ``count`` subscribed sessions and say ``ready``. Then, for every line
    ``report R`` on stdin, wait until each has received the event of round R (or
    ``FANOUT_WAIT`` seconds) and print a JSON line with their arrival times: the
    kernel's stamps, or, for a packet that came without one, when it was read.
    Ends when stdin closes."""
    arrivals: dict[int, list[float]] = {}
    unstamped: dict[int, int] = {}
    complete: dict[int, asyncio.Event] = {}

    def on_event(round: int, stamp: float | None) -> None:
        times = arrivals.setdefault(round, [])
        if stamp is None:
            stamp = time.time()
            unstamped[round] = unstamped.get(round, 0) + 1
        times.append(stamp)
        if len(times) == count:
            complete.setdefault(round, asyncio.Event()).set()

    subs: list[_Subscriber] = []
    for start in range(0, count, CONNECT_BATCH):
        n = min(CONNECT_BATCH, count - start)
        subs += await asyncio.gather(*(_subscribe(url, on_event) for _ in range(n)))
    loop = asyncio.get_running_loop()
    print(f"ready {len(subs)}", flush=True)
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        round = int(line.split()[1])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(complete.setdefault(round, asyncio.Event()).wait(), FANOUT_WAIT)
        times = arrivals.pop(round, [])
        report = {"round": round, "times": times, "unstamped": unstamped.pop(round, 0)}
        print(orjson.dumps(report).decode(), flush=True)
        complete.pop(round, None)
    for sub in subs:
        sub.close()


def _report(holder: subprocess.Popen[str], round: int) -> dict[str, Any]:
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.write(f"report {round}\n")
    holder.stdin.flush()
    line = holder.stdout.readline()
    if not line:
        raise RuntimeError(f"a subscriber holder exited with {holder.wait()}")
    report: dict[str, Any] = orjson.loads(line)
    return report


async def _fanout_rounds(
    running: dict[str, servers.Running],
    holders: dict[str, list[subprocess.Popen[str]]],
    subscribers: int,
    rounds: int,
) -> list[dict[str, Any]]:
    import aiohttp

    loop = asyncio.get_running_loop()
    kinds = list(running)
    rows = []
    async with aiohttp.ClientSession() as http:
        submitters = {kind: await http.ws_connect(running[kind].url) for kind in kinds}
        for ws in submitters.values():
            await ws.receive()  # the welcome
        for r in range(rounds):
            shift = r % len(kinds)
            for kind in kinds[shift:] + kinds[:shift]:
                ws = submitters[kind]
                frame = encode_submit(r, "publish", [{"round": r, "top": [98, 75, 60]}])
                t0 = time.time()  # the clock of the kernel's stamps (see above)
                await ws.send_frame(frame, aiohttp.WSMsgType.TEXT)
                reply = decode_server((await ws.receive()).data)
                if type(reply) is not Result:
                    raise RuntimeError(f"{kind}: the publishing submit got {reply!r:.200}")
                reports = await asyncio.gather(
                    *(loop.run_in_executor(None, _report, h, r) for h in holders[kind])
                )
                delays = sorted(t - t0 for rep in reports for t in rep["times"])
                if not delays:
                    raise RuntimeError(f"{kind}: no subscriber got the event in {FANOUT_WAIT} s")
                row = {
                    "server": kind,
                    "round": r,
                    "subscribers": subscribers,
                    "received": len(delays),
                    "unstamped": sum(rep["unstamped"] for rep in reports),
                    "first_ms": round(1000 * delays[0], 3),
                    "median_ms": round(1000 * statistics.median(delays), 3),
                    "last_ms": round(1000 * delays[-1], 3),
                    "deliveries_per_s": round(len(delays) / delays[-1], 1),
                }
                rows.append(row)
                log(
                    f"fan-out round {r + 1}/{rounds}  {kind:16} {len(delays)}/{subscribers} "
                    f"subscribers: median {row['median_ms']:.1f} ms, last {row['last_ms']:.1f} ms, "
                    f"{row['deliveries_per_s']:.0f} deliveries/s"
                )
                await asyncio.sleep(0.2)  # let the holders and the server go idle
        for ws in submitters.values():
            await ws.close()
    return rows


def summarize_fanout(rows: list[dict[str, Any]], kinds: list[str]) -> list[dict[str, Any]]:
    """Medians over rounds per server, and deliveries/s divided by the baseline's."""
    out: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        mine = [r for r in rows if r["server"] == kind]
        if not mine:
            continue
        n = mine[0]["subscribers"]
        last = statistics.median(r["last_ms"] for r in mine)
        out[kind] = {
            "server": kind,
            "subscribers": n,
            "first_ms": round(statistics.median(r["first_ms"] for r in mine), 3),
            "median_ms": round(statistics.median(r["median_ms"] for r in mine), 3),
            "last_ms": round(last, 3),
            "last_ms_range": [min(r["last_ms"] for r in mine), max(r["last_ms"] for r in mine)],
            "deliveries_per_s": round(n / (last / 1000), 1),
            "missed": sum(n - r["received"] for r in mine),
            "unstamped": sum(r["unstamped"] for r in mine),
        }
    base = out.get("baseline-fanout")
    for entry in out.values():
        if base and base["deliveries_per_s"] > 0:
            entry["vs_baseline"] = round(entry["deliveries_per_s"] / base["deliveries_per_s"], 3)
    return list(out.values())


def fanout(size: dict[str, Any], fd_limit: int) -> dict[str, Any]:
    """One publish to N subscribers: the time until the last of them has it."""
    requested = size["subscribers"]
    # The server needs a descriptor per subscriber plus a few of its own (the
    # holders are other processes, each with its own limit).
    n = min(requested, fd_limit - 100)
    per_holder = min(SUBSCRIBERS_PER_HOLDER, fd_limit - 100)
    procs = -(-n // per_holder)
    kinds = ["baseline-fanout", "tether-fanout"]
    running: dict[str, servers.Running] = {}
    holders: dict[str, list[subprocess.Popen[str]]] = {}
    try:
        for kind in kinds:
            running[kind] = servers.start(kind)
            t0 = time.monotonic()
            holders[kind] = hold_sessions(running[kind].url, n, procs, "--subscribe")
            log(f"fan-out {kind}: {n} subscribers in {time.monotonic() - t0:.1f} s")
        rows = asyncio.run(_fanout_rounds(running, holders, n, size["fanout_rounds"]))
    finally:
        for group in holders.values():
            release(group)
        for server in running.values():
            server.stop()
    return {
        "requested": requested,
        "subscribers": n,
        "holder_processes": procs,
        "rounds": size["fanout_rounds"],
        "rows": rows,
        "summary": summarize_fanout(rows, kinds),
    }


# -- wire bytes ------------------------------------------------------------------------------


async def _reply_sizes(url: str, turns: int, deltas: bool) -> list[int]:
    """The payload bytes of each chat reply (its `result` frame) on one new session."""
    import aiohttp

    out = []
    async with aiohttp.ClientSession() as http, http.ws_connect(url, decode_text=False) as ws:
        welcome = decode_welcome((await ws.receive()).data)
        if welcome.deltas is not deltas:
            raise RuntimeError(f"asked for deltas={deltas}, the welcome says {welcome!r:.200}")
        for turn in range(turns):
            submit = encode_submit(turn, "chat", [f"message {turn}"])
            await ws.send_frame(submit, aiohttp.WSMsgType.TEXT)
            msg = await ws.receive()
            if type(decode_server(msg.data)) is not Result:
                raise RuntimeError(f"turn {turn + 1}: {msg.data!r:.200}")
            out.append(len(msg.data))
    return out


def wire(size: dict[str, Any]) -> dict[str, Any]:
    """Bytes per chat reply at some turns of one conversation, with and without deltas."""
    turns = size["wire_turns"]
    with servers.running("tether-sync") as url:
        full = asyncio.run(_reply_sizes(url, max(turns), deltas=False))
        delta = asyncio.run(_reply_sizes(url + "?deltas=1", max(turns), deltas=True))
    rows = [
        {
            "turn": t,
            "full_bytes": full[t - 1],
            "delta_bytes": delta[t - 1],
            "delta_vs_full": round(delta[t - 1] / full[t - 1], 4),
        }
        for t in turns
    ]
    for row in rows:
        log(
            f"wire: turn {row['turn']:>5}: {row['full_bytes']} bytes, with deltas "
            f"{row['delta_bytes']} ({row['delta_vs_full']:.3f})"
        )
    return {"rows": rows}


# -- cold start ------------------------------------------------------------------------


def cold_start(size: dict[str, Any]) -> dict[str, Any]:
    def timed(cmd: list[str]) -> float:
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)
        return time.perf_counter() - t0

    def demo_until_healthy() -> float:
        port = servers.free_port()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            servers.command("tether-sync", port),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        try:
            servers.wait_healthy(port, proc=proc)
            return time.perf_counter() - t0
        finally:
            proc.terminate()
            proc.wait(timeout=15)

    samples: dict[str, list[float]] = {"python_pass": [], "import_tether": [], "demo_healthz": []}
    for _ in range(size["cold_repeats"]):
        samples["python_pass"].append(timed([sys.executable, "-c", "pass"]))
        samples["import_tether"].append(timed([sys.executable, "-c", "import tether"]))
        samples["demo_healthz"].append(demo_until_healthy())
    out = {f"{k}_ms": round(1000 * statistics.median(v), 1) for k, v in samples.items()}
    log(f"cold start: {out}")
    return out


# -- reporting ------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / (1 << 30), 1),
        "kernel": platform.release(),
        "system": platform.system(),
    }


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("tether", "aiohttp", "uvloop", "websockets", "orjson"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out["git"] = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    return out


def markdown(results: dict[str, Any]) -> str:
    """The summary of a run (the results block of bench/README.md); a section the run
    did not include (``--only``, or an older results file) is left out."""
    m, v = results["machine"], results["versions"]
    only = results.get("sections")
    kind = ("quick" if results["quick"] else "full") + (f", only {', '.join(only)}" if only else "")
    lines = [
        f"Run of {results['date']} ({kind}): "
        f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['system']} {m['kernel']}; "
        + ", ".join(f"{k} {val}" for k, val in v.items())
        + ".",
    ]
    for section, render in RENDERERS.items():
        if section in results:
            lines += ["", *render(results)]
    return "\n".join(lines)


def _throughput_md(results: dict[str, Any]) -> list[str]:
    size = results["sizes"]
    lines = [
        f"Throughput: `tether loadtest --scenario chat --turns {size['turns']}` (closed loop, "
        f"one generator process), {size['seconds']:g} s per row, median of "
        f"{size['rounds']} alternating round(s). Ratios are submits/s of the row divided by "
        "the baseline's at the same C. Generator CPU is the generator process's, % of its "
        f"core (median over rounds); a row whose generator passed {SATURATED_PERCENT:.0f}% in "
        "any round measured the generator, not the server, and gets no ratio (nor does a "
        "row compared with such a baseline). Server CPU is the server process's user + "
        "system time (all its threads) over the row divided by the submits answered; "
        "capacity is the baseline's CPU per submit divided by the row's: the share of the "
        "baseline's submits/s the row's server would carry with its core to itself. It "
        "needs no headroom in the generator, so it stands where the submits/s ratio cannot "
        "(a server held below its limit by a saturated generator spends a little more CPU "
        "per submit than at its limit, so capacity against a generator-bound baseline "
        "leans slightly towards the row).",
        "",
        "| C | server | submits/s | rounds: min..max | p50 ms | p99 ms | generator CPU "
        "| ÷ baseline-inline | ÷ baseline-executor | server CPU µs/submit "
        "| capacity ÷ baseline-inline | capacity ÷ baseline-executor |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = results["throughput"]["rows"]
    kinds = list(dict.fromkeys(r["server"] for r in rows))
    for e in summarize(rows, kinds, size["concurrency"]):
        low, high = e["throughput_range"]
        mark = " (generator saturated)" if e["generator_saturated"] else ""
        codes = ", ".join(f"{k} {n}" for k, n in e.get("error_codes", {}).items())
        err = f", {e['errors']} errors over the rounds" if e["errors"] else ""
        err += f" ({codes})" if codes else ""
        lines.append(
            f"| {e['clients']} | {e['server']}{mark}{err} | {e['throughput']:.0f} | "
            f"{low:.0f}..{high:.0f} | {e['p50_ms']:.2f} | {e['p99_ms']:.2f} | "
            f"{e['generator_cpu_percent']:.0f}% | {ratio_cell(e, 'vs_baseline-inline')} | "
            f"{ratio_cell(e, 'vs_baseline-executor')} | {e.get('server_cpu_us') or ''} | "
            f"{e.get('capacity_vs_baseline-inline', '')} | "
            f"{e.get('capacity_vs_baseline-executor', '')} |"
        )
    return lines


def _latency_md(results: dict[str, Any]) -> list[str]:
    size = results["sizes"]
    lines = [
        f"Latency below saturation: the same chat, open loop (`--rate`) with "
        f"{size['latency_users']} sessions at fixed total rates every server carries, "
        f"{size['seconds']:g} s per row, median of {size['rounds']} alternating round(s). "
        "(At saturation, a closed loop's latency is its concurrency over its throughput, "
        "whatever the server.)",
        "",
        "| submits/s | server | carried/s | p50 ms | p99 ms | max ms | generator CPU "
        "| p99 ÷ baseline-inline |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for e in results["latency"]["summary"]:
        err = f", {e['errors']} errors" if e["errors"] else ""
        mark = " (generator saturated)" if e.get("generator_saturated") else ""
        cpu = f"{e['generator_cpu_percent']:.0f}%" if "generator_cpu_percent" in e else ""
        lines.append(
            f"| {e['rate']:g} | {e['server']}{mark}{err} | {e['carried']:.0f} | "
            f"{e['p50_ms']:.2f} | {e['p99_ms']:.2f} | {e['max_ms']:.2f} | {cpu} | "
            f"{ratio_cell(e, 'p99_vs_baseline-inline')} |"
        )
    return lines


def _memory_md(results: dict[str, Any]) -> list[str]:
    mem = results["memory"]
    lines = ["Idle memory per session (server RSS growth / sessions):", ""]
    lines += ["| server | " + " | ".join(f"{n} sessions" for n in mem["sessions"]) + " |"]
    lines += ["|---|" + "---:|" * len(mem["sessions"])]
    for kind, data in mem["servers"].items():
        cells = " | ".join(f"{lv['bytes_per_session'] / 1024:.1f} KiB" for lv in data["levels"])
        lines.append(f"| {kind} | {cells} |")
    return lines + _capped("sessions", mem["requested"], mem["sessions"])


def _capped(what: str, requested: Any, measured: Any) -> list[str]:
    """A note when the open-files limit allowed fewer than were asked for."""
    if measured == requested:
        return []
    return [
        "",
        f"(Asked for {requested} {what}; the open-files limit of this machine allowed {measured}.)",
    ]


def _fanout_md(results: dict[str, Any]) -> list[str]:
    fan = results["fanout"]
    lines = [
        f"Fan-out: one submit whose function publishes one event to {fan['subscribers']} "
        f"subscribers (each its own session, held by {fan['holder_processes']} process(es) "
        f"on the generator core), median of {fan['rounds']} alternating round(s). Times run "
        "from the submit leaving the client until the event's packet enters a subscriber's "
        "socket (the kernel's receive stamp): to the first, the median and the last "
        "subscriber. Deliveries/s is subscribers / the time to the last one, and the ratio "
        "is that divided by the baseline's.",
        "",
        "| server | subscribers | first ms | median ms | last ms | last: rounds min..max "
        "| deliveries/s | ÷ baseline-fanout |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    kinds = list(dict.fromkeys(r["server"] for r in fan["rows"]))
    for e in summarize_fanout(fan["rows"], kinds):
        mark = f", {e['missed']} deliveries missed over the rounds" if e["missed"] else ""
        if e.get("unstamped"):
            mark += f", {e['unstamped']} times read by the holder, not stamped by the kernel"
        low, high = e["last_ms_range"]
        lines.append(
            f"| {e['server']}{mark} | {e['subscribers']} | {e['first_ms']:.1f} | "
            f"{e['median_ms']:.1f} | "
            f"{e['last_ms']:.1f} | {low:.1f}..{high:.1f} | {e['deliveries_per_s']:.0f} | "
            f"{e.get('vs_baseline', '')} |"
        )
    return lines + _capped("subscribers", fan["requested"], fan["subscribers"])


def _wire_md(results: dict[str, Any]) -> list[str]:
    lines = [
        "Wire bytes per chat reply (payload of the `result` frame of the demo's `chat`, "
        "one conversation), without and with `/ws?deltas=1`:",
        "",
        "| turn | full bytes | delta bytes | delta ÷ full |",
        "|---:|---:|---:|---:|",
    ]
    for row in results["wire"]["rows"]:
        lines.append(
            f"| {row['turn']} | {row['full_bytes']} | {row['delta_bytes']} | "
            f"{row['delta_vs_full']:.3f} |"
        )
    return lines


def _cold_start_md(results: dict[str, Any]) -> list[str]:
    c = results["cold_start"]
    return [
        f"Cold start (median): `tether demo` until /healthz answers {c['demo_healthz_ms']:.0f} ms; "
        f"`python -c 'import tether'` {c['import_tether_ms']:.0f} ms "
        f"(`python -c pass` {c['python_pass_ms']:.0f} ms).",
    ]


def _turn_cost_md(turns: dict[str, Any]) -> list[str]:
    size = turns["sizes"]
    return [
        "Turn cost (`bench/turn_cost.py`): one session on an idle server, the chat's round "
        f"trip and the server's CPU per submit at turns {', '.join(map(str, size['turns']))} "
        f"({size['batch']} submits measured per cell), with output deltas on and off; medians "
        f"of {size['rounds']} alternating rounds. The ratios are the last turn ÷ the first "
        "(goal with deltas on: ≤ 1.5).",
        "",
        "```",
        turn_cost.table(turns),
        "```",
    ]


# The sections of a run, in the order they run and are shown.
RENDERERS = {
    "generator": lambda results: generator.markdown(results["generator"]),
    "throughput": _throughput_md,
    "latency": _latency_md,
    "memory": _memory_md,
    "fanout": _fanout_md,
    "wire": _wire_md,
    "cold_start": _cold_start_md,
    "turn_cost": lambda results: _turn_cost_md(results["turn_cost"]),
    "global_state": lambda results: global_state.markdown(results["global_state"]),
}
SECTIONS = list(RENDERERS)


def update_readme(text: str) -> None:
    readme = README.read_text()
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    README.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def main() -> int:
    parser = argparse.ArgumentParser(description="tether's benchmark")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument(
        "--only",
        metavar="SECTION,...",
        help=f"run only these sections, comma-separated: {', '.join(SECTIONS)}",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results", help="results directory")
    parser.add_argument("--update-readme", action="store_true", help="rewrite bench/README.md")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS.json",
        help="only print (and with --update-readme, write) the summary of an earlier run",
    )
    parser.add_argument("--hold", nargs=2, metavar=("URL", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--subscribe", nargs=2, metavar=("URL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    fd_limit = raise_open_files_limit()
    if args.hold or args.subscribe:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            if args.hold:
                runner.run(_hold(args.hold[0], int(args.hold[1])))
            else:
                runner.run(_hold_subscribers(args.subscribe[0], int(args.subscribe[1])))
        return 0

    if args.render:
        text = markdown(orjson.loads(args.render.read_bytes()))
        print(text)
        if args.update_readme:
            update_readme(text)
        return 0

    sections = SECTIONS
    if args.only:
        sections = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(sections) - set(SECTIONS))
        if unknown or not sections:
            parser.error(f"--only: unknown section(s) {unknown}; choose from {SECTIONS}")
        if args.update_readme:
            parser.error("--update-readme takes a run of every section (leave out --only)")
    size = sizes(args.quick)
    date = dt.datetime.now(dt.UTC)
    results: dict[str, Any] = {
        "date": date.strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "machine": machine(),
        "versions": versions(),
        "sizes": size,
        "open_files_limit": fd_limit,
        "notes": [
            "The machine is shared with other work; figures are noisy.",
            "Servers pinned to one core; load generator and session holders to the other.",
            "Fan-out times compare the client's time.time() at the submit with the kernel's "
            "receive timestamps of the subscribers' sockets (one CLOCK_REALTIME).",
        ],
    }
    if args.only:
        results["sections"] = sections
    for section in SECTIONS:  # always in this order, whatever the order given to --only
        if section not in sections:
            continue
        if section == "generator":
            results["generator"] = generator.run(
                size["generator_users"],
                size["generator_seconds"],
                size["generator_rounds"],
                size["turns"],
                log=log,
            )
        elif section == "throughput":
            results["throughput"] = throughput(size, [*BASELINES, *TETHERS])
        elif section == "latency":
            results["latency"] = latency(size, [*BASELINES, *TETHERS])
        elif section == "memory":
            results["memory"] = memory(size, ["baseline-inline", "tether-sync"], fd_limit)
        elif section == "fanout":
            results["fanout"] = fanout(size, fd_limit)
        elif section == "wire":
            results["wire"] = wire(size)
        elif section == "cold_start":
            results["cold_start"] = cold_start(size)
        elif section == "turn_cost":
            results["turn_cost"] = turn_cost.run(args.quick)
        elif section == "global_state":
            results["global_state"] = global_state.run(args.quick, log=log)

    args.out.mkdir(parents=True, exist_ok=True)
    name = date.strftime("%Y-%m-%d") + ("-quick" if args.quick else "")
    name += "-only-" + "-".join(s for s in SECTIONS if s in sections) if args.only else ""
    path = args.out / f"{name}.json"
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    text = markdown(results)
    print(text)
    log(f"results written to {path}")
    if args.update_readme:
        update_readme(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
