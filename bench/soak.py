"""Soak and chaos harness (issue 12): ``make soak``, or ``python bench/soak.py``.

Four phases, each against its own real server process on loopback, each
printing its figures and PASS or FAIL; the run exits 1 on any FAIL.

- ``correctness``: ``--submits`` chat submits from ``--sessions`` concurrent
  users to ``tether demo``; each user runs conversations of ``--turns`` turns on
  fresh connections (``--window`` submits in flight). Independent check: every
  reply's history must equal exactly the messages this conversation sent, in
  order (its messages are globally unique, so a reply carrying anyone else's
  shows up); every submit answered exactly once (no second reply, no reply to an
  id never sent, no connection lost with a submit unanswered), no session id
  handed out twice, and no error at all.
- ``cycles``: ``--cycles`` connect / one submit / close cycles; the server's RSS
  after ``--cycles-warmup`` of them (sessions all gone) is the reference, and
  the RSS after the rest (sessions all gone again) must be within
  ``--rss-tolerance`` (10%) of it.
- ``redis``: ``tether serve soak_app:app`` on a ``redis-server`` of its own (no
  persistence); users write unique keys with ``put`` for ``--redis-seconds``;
  Redis is killed (SIGKILL) a third of the way in and restarted on the same port
  ``--outage`` seconds later. With no persistence the restart is an empty
  database, so the rule checked is: (1) every write acknowledged (a ``result``)
  after the restart began (the new process launched) is in Redis with its value;
  (2) no write sent after the kill and answered before the restart began got a
  ``result`` (a false ack): those get
  ``store_unavailable``; (3) no error code other than ``store_unavailable``; (4)
  every submit is answered; (5) writes are acknowledged again after the restart.
- ``sigterm``: ``--sigterm-sessions`` sessions each keep ``--window`` chat submits
  in flight, each followed by a ``ping``; after ``--sigterm-after`` seconds the
  server gets SIGTERM. The server reads a connection's messages in order, so a
  submit is known to have been *read* when a later message got an answer (a
  later submit's reply, or the ``pong`` of a ping sent after it). PASS when no
  read submit went unanswered (``lost``), every connection ended with 1001, the
  server exited 0, and no unanswered submit had been sent more than
  ``--sigterm-slack`` seconds before its connection's 1001 arrived (the
  "unread" ones: the 1001 came before the server read them).

``--quick`` sets tiny sizes (a few seconds a phase; ``tests/test_soak.py``);
``--phases`` picks phases. Generator work is spread over ``--procs`` processes.
The figures come from a shared 2-core machine: noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tether.demo import reply_to
from tether.loadtest import LeanConnection
from tether.loadtest.connection import ID_RANGE, ConnectionLost
from tether.protocol import Error, Pong, Result, encode_ping

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from servers import CAPS, free_port, rss_bytes, wait_healthy  # noqa: E402
from soak_app import KEY_PREFIX  # noqa: E402

NAMESPACE = "soak"  # the Redis phase's namespace: values are at soak:v:<key>
PHASES = ("correctness", "cycles", "redis", "sigterm")
Figures = dict[str, Any]


# -- processes -----------------------------------------------------------------


class Server:
    """A tether server subprocess on a free loopback port; its stderr goes to a log."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log = Path(tempfile.mkstemp(prefix="tether-soak-", suffix=".log")[1])
        cmd = [sys.executable, "-m", "tether", *args, "--port", str(self.port)]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [*cmd, "--log-level", "warning", *CAPS],
                cwd=HERE,
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        wait_healthy(self.port, proc=self.proc)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as r:
            health: dict[str, Any] = orjson.loads(r.read())
            return health

    def rss(self) -> int:
        return rss_bytes(self.proc.pid)

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until the server holds no session (open or parked), then a little more."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            h = self.health()
            if h.get("sessions") == 0 and h.get("parked", 0) == 0:
                break
            time.sleep(0.1)
        time.sleep(1.0)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        with contextlib.suppress(OSError):
            self.log.unlink()


class Redis:
    """A ``redis-server`` of the soak's own: a free loopback port, no persistence."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not on PATH")
        self.binary = binary
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="tether-soak-redis-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir, "--daemonize", "no",
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                import socket

                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on {self.port}")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def _run(coro_fn: Callable[..., Awaitable[Figures]], *args: Any) -> Figures:
    """Run one generator coroutine in this (worker) process."""
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.run(coro_fn(*args))
    return asyncio.run(coro_fn(*args))


def fan_out(procs: int, coro_fn: Callable[..., Awaitable[Figures]], *args: Any) -> Figures:
    """Run ``coro_fn(proc, procs, *args)`` in ``procs`` processes and add up the counts."""
    if procs <= 1:
        return _run(coro_fn, 0, 1, *args)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(procs, mp_context=ctx) as pool:
        parts = list(pool.map(_run, [coro_fn] * procs, range(procs), [procs] * procs, *[
            [a] * procs for a in args
        ]))  # fmt: skip
    return merge(parts)


def merge(parts: list[Figures]) -> Figures:
    out: Figures = {}
    for part in parts:
        for k, v in part.items():
            if isinstance(v, Counter):
                out.setdefault(k, Counter()).update(v)
            elif isinstance(v, list):
                out.setdefault(k, []).extend(v)
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                out[k] = max(out[k], v) if k.startswith("max_") and k in out else out.get(k, 0) + v
            else:
                out[k] = v
    return out


def share(total: int, proc: int, procs: int) -> int:
    return total // procs + (1 if proc < total % procs else 0)


def first_id(proc: int, conn: int) -> int:
    """Submit ids of one connection: a range of their own in the whole run (below 2**53)."""
    return ((proc << 18) + conn + 1) * ID_RANGE


# -- phase 1: correctness --------------------------------------------------------


async def correctness_gen(
    proc: int, procs: int, url: str, submits: int, users: int, turns: int, window: int
) -> Figures:
    budget = [share(submits, proc, procs)]
    users = share(users, proc, procs)
    f: Figures = {"sent": 0, "ok": 0, "lost": 0, "wrong_history": 0, "conversations": 0}
    codes: Counter[str] = Counter()
    violations: Counter[str] = Counter()
    examples: list[str] = []
    sessions: list[str] = []
    conns = [0]

    def violation(text: str) -> None:
        violations["duplicated" if "second reply" in text else "misrouted/protocol"] += 1
        if len(examples) < 5:
            examples.append(text)

    async def conversation(http: aiohttp.ClientSession, user: int, n: int) -> None:
        conns[0] += 1
        cid = conns[0]
        conn = await LeanConnection.open(http, url, lambda _m: None, violation, first_id(proc, cid))
        sessions.append(conn.session)
        expected: list[list[str]] = []
        inflight: deque[tuple[int, asyncio.Future[Any]]] = deque()

        async def check(k: int, fut: asyncio.Future[Any]) -> None:
            try:
                reply = await fut
            except ConnectionLost:
                f["lost"] += 1
                return
            if isinstance(reply, Error):
                codes[reply.code] += 1
            elif isinstance(reply, Result) and reply.data == [expected[: k + 1]]:
                f["ok"] += 1
            else:
                f["wrong_history"] += 1
                if len(examples) < 5:
                    examples.append(f"turn {k} of {conn.session}: {str(reply)[:200]}")

        for k in range(n):
            if len(inflight) >= window:
                await check(*inflight.popleft())
            message = f"p{proc}u{user}c{cid}t{k}"
            expected.append([message, reply_to(message)])
            inflight.append((k, asyncio.ensure_future(conn.submit("chat", [message]))))
            f["sent"] += 1
        while inflight:
            await check(*inflight.popleft())
        f["conversations"] += 1
        await conn.close()

    async def user(http: aiohttp.ClientSession, u: int) -> None:
        while budget[0] > 0:
            n = min(turns, budget[0])
            budget[0] -= n
            try:
                await conversation(http, u, n)
            except (aiohttp.ClientError, OSError, ConnectionError) as exc:
                codes[f"connect:{type(exc).__name__}"] += 1

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(*(user(http, u) for u in range(users)))
    f["sessions"] = sessions
    f["codes"] = codes
    f["violations"] = violations
    f["examples"] = examples
    return f


def correctness(a: argparse.Namespace) -> tuple[bool, Figures]:
    server = Server(["demo"])
    try:
        t0 = time.monotonic()
        args = (server.url, a.submits, a.sessions, a.turns, a.window)
        f = fan_out(a.procs, correctness_gen, *args)
        took = time.monotonic() - t0
    finally:
        server.stop()
    sessions = f.pop("sessions")
    f["sessions"] = len(sessions)
    f["duplicate_session_ids"] = len(sessions) - len(set(sessions))
    f["submits_per_s"] = round(f["sent"] / took)
    f["seconds"] = round(took, 1)
    ok = (
        f["sent"] >= a.submits
        and f["ok"] == f["sent"]
        and f["lost"] == 0
        and f["wrong_history"] == 0
        and not f["violations"]
        and not f["codes"]
        and f["duplicate_session_ids"] == 0
    )
    return ok, f


# -- phase 2: connect/disconnect cycles ------------------------------------------


async def cycles_gen(proc: int, procs: int, url: str, cycles: int, users: int) -> Figures:
    budget = [share(cycles, proc, procs)]
    f: Figures = {"cycles": 0}
    codes: Counter[str] = Counter()
    bad: list[str] = []

    async def user(http: aiohttp.ClientSession, u: int) -> None:
        while budget[0] > 0:
            budget[0] -= 1
            try:
                conn = await LeanConnection.open(http, url, lambda _m: None, bad.append)
                try:
                    reply = await conn.submit("chat", ["hi"])
                    if not isinstance(reply, Result):
                        codes[getattr(reply, "code", "?")] += 1
                finally:
                    await conn.close()
                f["cycles"] += 1
            except (aiohttp.ClientError, OSError, ConnectionError, ConnectionLost) as exc:
                codes[type(exc).__name__] += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        await asyncio.gather(*(user(http, u) for u in range(share(users, proc, procs))))
    f["errors"] = codes
    f["violations"] = len(bad)
    return f


def cycles(a: argparse.Namespace) -> tuple[bool, Figures]:
    server = Server(["demo"])
    try:
        start = server.rss()
        t0 = time.monotonic()
        warm = fan_out(a.procs, cycles_gen, server.url, a.cycles_warmup, a.cycle_users)
        server.settle()
        reference = server.rss()
        rest = a.cycles - a.cycles_warmup
        done = fan_out(a.procs, cycles_gen, server.url, rest, a.cycle_users)
        took = time.monotonic() - t0
        server.settle()
        end = server.rss()
    finally:
        server.stop()
    total = merge([warm, done])
    growth = end / reference - 1
    f: Figures = {
        "cycles": total["cycles"],
        "cycles_per_s": round(total["cycles"] / took),
        "rss_start_mib": round(start / 2**20, 1),
        "rss_after_warmup_mib": round(reference / 2**20, 1),
        "rss_end_mib": round(end / 2**20, 1),
        "growth_pct": round(100 * growth, 1),
        "errors": total["errors"],
        "violations": total["violations"],
    }
    ok = (
        total["cycles"] >= a.cycles
        and growth <= a.rss_tolerance
        and not total["errors"]
        and not total["violations"]
    )
    return ok, f


# -- phase 3: Redis killed and restarted ------------------------------------------


async def redis_gen(proc: int, procs: int, url: str, seconds: float, users: int) -> Figures:
    """Closed-loop ``put``s of unique keys; every outcome recorded with wall-clock times."""
    records: list[tuple[str, int, float, float, str]] = []
    end = time.time() + seconds
    conns = [0]

    async def user(http: aiohttp.ClientSession, u: int) -> None:
        i = 0
        while time.time() < end:
            conns[0] += 1
            try:
                conn = await LeanConnection.open(
                    http, url, lambda _m: None, print, first_id(proc, conns[0])
                )
            except (aiohttp.ClientError, OSError, ConnectionError):
                records.append(("", 0, time.time(), time.time(), "connect_failed"))
                await asyncio.sleep(0.1)
                continue
            try:
                while time.time() < end:
                    key, value = f"{proc}-{u}-{i}", i
                    i += 1
                    sent = time.time()
                    try:
                        reply = await conn.submit("put", [key, value])
                    except ConnectionLost:
                        records.append((key, value, sent, time.time(), "unanswered"))
                        break
                    ok = isinstance(reply, Result) and reply.data == [value]
                    outcome = "ack" if ok else getattr(reply, "code", "bad_result")
                    records.append((key, value, sent, time.time(), outcome))
            finally:
                await conn.close()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        await asyncio.gather(*(user(http, u) for u in range(share(users, proc, procs))))
    return {"records": records}


def redis(a: argparse.Namespace) -> tuple[bool, Figures]:
    import redis as redis_py

    store = Redis()
    server = Server(["serve", "soak_app:app", "--store", store.url, "--namespace", NAMESPACE])
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            job = pool.submit(fan_out, a.procs, redis_gen, server.url, a.redis_seconds, a.users)
            # Kill Redis a third into the run, counted from the first writes: a loaded
            # machine (a CI run) may take seconds to start the generator process.
            probe = redis_py.Redis(port=store.port)
            deadline = time.time() + 60
            while time.time() < deadline and probe.dbsize() < 10 and not job.done():
                time.sleep(0.05)
            probe.close()
            time.sleep(a.redis_seconds / 3)
            killed = time.time()
            store.kill()
            time.sleep(a.outage)
            restarted = time.time()  # before the new process exists: nothing written earlier
            store.start()
            up = time.time()
            records = job.result(timeout=a.redis_seconds + 120)["records"]
        client = redis_py.Redis(port=store.port)
        acked_after = [r for r in records if r[4] == "ack" and r[3] > restarted]
        missing = 0
        for i in range(0, len(acked_after), 1000):
            batch = acked_after[i : i + 1000]
            raw = client.mget([f"{NAMESPACE}:v:{KEY_PREFIX}{r[0]}" for r in batch])
            missing += sum(
                1 for r, v in zip(batch, raw, strict=True) if v is None or orjson.loads(v) != r[1]
            )
        client.close()
    finally:
        server.stop()
        store.close()
    outcomes = Counter(r[4] for r in records)
    false_acks = sum(1 for r in records if r[4] == "ack" and r[2] > killed and r[3] < restarted)
    during = Counter(r[4] for r in records if r[2] > killed and r[3] < restarted)
    after = [r[3] for r in acked_after]
    f: Figures = {
        "submits": len(records),
        "outcomes": dict(outcomes),
        "acked_before_kill": sum(1 for r in records if r[4] == "ack" and r[3] < killed),
        "answered_during_outage": dict(during),
        "false_acks": false_acks,
        "acked_after_restart": len(acked_after),
        "acked_after_restart_missing": missing,
        "first_ack_after_restart_s": round(min(after) - restarted, 2) if after else None,
        "outage_s": round(restarted - killed, 2),
        "restart_s": round(up - restarted, 3),
    }
    allowed = {"ack", "store_unavailable"}
    ok = (
        missing == 0
        and false_acks == 0
        and set(outcomes) <= allowed
        and len(acked_after) > 0
        and during.get("store_unavailable", 0) > 0
    )
    return ok, f


# -- phase 4: SIGTERM mid-load --------------------------------------------------------


async def sigterm_gen(proc: int, procs: int, url: str, users: int, window: int) -> Figures:
    f: Figures = {"sent": 0, "result": 0, "shutting_down": 0, "lost": 0, "unread": 0}
    codes: Counter[str] = Counter()
    closes: Counter[str] = Counter()
    ages: list[float] = []
    examples: list[str] = []

    async def user(http: aiohttp.ClientSession, u: int) -> None:
        pings: deque[int] = deque()  # the submit index each ping in flight follows
        read = [-1]  # highest submit index known to have been read (a later pong came)

        def on_frame(message: Any) -> None:
            if isinstance(message, Pong) and pings:
                read[0] = max(read[0], pings.popleft())

        conn = await LeanConnection.open(http, url, on_frame, print, first_id(proc, u))
        sent: list[tuple[float, asyncio.Future[Any]]] = []
        slots = asyncio.Semaphore(window)
        while not conn.closed:
            await slots.acquire()
            if conn.closed:
                break
            k = len(sent)
            fut = asyncio.ensure_future(conn.submit("chat", [f"p{proc}u{u}t{k}"]))
            fut.add_done_callback(lambda _f: slots.release())
            sent.append((time.time(), fut))
            # Let the submit's own task write its frame first: a ping written ahead
            # of it would "prove" a submit read that was still in the client.
            await asyncio.sleep(0)
            with contextlib.suppress(Exception):
                await conn.ws.send_frame(encode_ping(), aiohttp.WSMsgType.TEXT)
                pings.append(k)
        await conn.wait_closed()
        closed_at = time.time()
        closes[str(conn.ws.close_code)] += 1
        outcomes: list[str] = []
        for _t, fut in sent:
            try:
                reply = await fut
                outcomes.append("result" if isinstance(reply, Result) else reply.code)
            except ConnectionLost:
                outcomes.append("")  # sent, and the connection closed without an answer
            except (ConnectionError, aiohttp.ClientError):
                outcomes.append("unsent")  # the connection was gone before it left
        answered = [i for i, o in enumerate(outcomes) if o not in ("", "unsent")]
        last_answered = max(answered, default=-1)
        for i, o in enumerate(outcomes):
            if o == "unsent":
                f["unsent"] = f.get("unsent", 0) + 1
            elif o:
                f["sent"] += 1
                if o in ("result", "shutting_down"):
                    f[o] += 1
                else:
                    codes[o] += 1
            else:
                f["sent"] += 1
                if i <= read[0] or i < last_answered:
                    f["lost"] += 1
                    if len(examples) < 5:
                        why = "a later reply" if i < last_answered else "a later pong"
                        age = round(1000 * (closed_at - sent[i][0]), 1)
                        examples.append(
                            f"submit {i} of {len(sent)}: {why}, sent {age} ms before 1001"
                        )
                else:
                    f["unread"] += 1
                    ages.append(closed_at - sent[i][0])

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        await asyncio.gather(*(user(http, u) for u in range(share(users, proc, procs))))
    f["codes"] = codes
    f["closes"] = closes
    f["max_unread_age_ms"] = round(1000 * max(ages, default=0.0), 1)
    f["lost_examples"] = examples
    return f


def sigterm(a: argparse.Namespace) -> tuple[bool, Figures]:
    server = Server(["demo"])
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            job = pool.submit(fan_out, a.procs, sigterm_gen, server.url, a.sigterm_sessions, 4)
            time.sleep(a.sigterm_after)
            t0 = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            code = server.proc.wait(60)
            exit_s = time.monotonic() - t0
            f = job.result(timeout=120)
    finally:
        server.stop()
    f["server_exit"] = code
    f["server_exit_s"] = round(exit_s, 2)
    ok = (
        f["lost"] == 0
        and not f["codes"]
        and set(f["closes"]) == {"1001"}
        and code == 0
        and f["max_unread_age_ms"] <= 1000 * a.sigterm_slack
        and f["result"] > 0
    )
    return ok, f


# -- the run -----------------------------------------------------------------------


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="tether soak and chaos harness")
    p.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset")
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds a phase)")
    p.add_argument("--procs", type=int, default=2, help="generator processes")
    p.add_argument("--submits", type=int, default=1_000_000)
    p.add_argument("--sessions", type=int, default=1000, help="concurrent chat users")
    p.add_argument("--turns", type=int, default=20, help="turns per conversation (session)")
    p.add_argument("--window", type=int, default=2, help="submits in flight per session")
    p.add_argument("--cycles", type=int, default=100_000)
    p.add_argument("--cycles-warmup", type=int, default=10_000)
    p.add_argument("--cycle-users", type=int, default=50, help="concurrent cycling clients")
    p.add_argument("--rss-tolerance", type=float, default=0.10)
    p.add_argument("--users", type=int, default=50, help="concurrent writers (redis phase)")
    p.add_argument("--redis-seconds", type=float, default=30.0)
    p.add_argument("--outage", type=float, default=3.0)
    p.add_argument("--sigterm-sessions", type=int, default=200)
    p.add_argument("--sigterm-after", type=float, default=5.0)
    p.add_argument("--sigterm-slack", type=float, default=0.25)
    a = p.parse_args(argv)
    if a.quick:
        a.submits, a.sessions, a.turns = 3000, 50, 10
        a.cycles, a.cycles_warmup, a.cycle_users = 1000, 300, 10
        a.users, a.redis_seconds, a.outage = 10, 6.0, 1.5
        a.sigterm_sessions, a.sigterm_after = 20, 1.5
        a.rss_tolerance = max(a.rss_tolerance, 0.25)  # too few cycles for a 10% signal
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    runners = {"correctness": correctness, "cycles": cycles, "redis": redis, "sigterm": sigterm}
    failed = []
    t0 = time.monotonic()
    for name in a.phases.split(","):
        start = time.monotonic()
        print(f"== {name} ...", flush=True)
        try:
            ok, figures = runners[name](a)
        except Exception as exc:  # a phase that crashes is a FAIL, not a stop
            ok, figures = False, {"crashed": f"{type(exc).__name__}: {exc}"}
        figures["phase_s"] = round(time.monotonic() - start, 1)
        print(f"{name}: {'PASS' if ok else 'FAIL'} {orjson.dumps(figures).decode()}", flush=True)
        if not ok:
            failed.append(name)
    print(f"soak: {'FAIL ' + ','.join(failed) if failed else 'PASS'}"
          f" in {time.monotonic() - t0:.0f} s")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
