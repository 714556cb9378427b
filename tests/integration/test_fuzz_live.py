"""Live fuzz: seeded random and mutated frames on several connections to a real server.

Every frame is classified by the sans-I/O decoder (the same code the server
runs) and, for submits, by a model of the app's functions; the test then
checks that the server's answers match exactly: each frame gets its one
documented answer (or none, for a valid ``cancel``), progress messages only
name submits in flight, events only arrive for subscribed topics, and a frame
that breaks the transport gets its documented close code. Meanwhile a control
session chats on and its history must stay exact.

Set ``TETHER_FUZZ_SEED`` to replay a run; the seed is in every failure message.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

import tether
from tether import App
from tether.errors import BadValue, RemoteProtocolError
from tether.protocol import (
    Cancel,
    Ping,
    Submit,
    Subscribe,
    Unsubscribe,
    decode_client,
)

SEED = int(os.environ.get("TETHER_FUZZ_SEED", "0")) or random.SystemRandom().randrange(1, 2**32)
FRAMES = 3000
CONNECTIONS = 4
MAX_MESSAGE_SIZE = 8192
SETTINGS: dict[str, Any] = {
    # The fuzzer sends as fast as it can: no rate limit may answer it instead.
    "submit_rate": 1e9,
    "submit_burst": 10**9,
    "flood_limit": 10**9,
    "max_message_size": MAX_MESSAGE_SIZE,
    "max_pending_per_session": 16,  # low enough to be reached now and then
}
TOPICS = ["news", "room:a", "room:b", "room:", "secrets", "news2", "", "r" * 129]


def fuzz_app() -> App:
    app = App("fuzz", topics=["news", "room:*"])

    @app.function(inputs=["text", "number"], outputs="json")
    def echo(text, n):
        return [text, n]

    @app.function(inputs="number", outputs="number")
    async def nap(seconds):
        await asyncio.sleep(min(abs(seconds), 0.02))
        return seconds

    @app.function(inputs="number", outputs="number")
    def count_to(n):
        yield from range(int(min(abs(n), 5)))

    @app.function(inputs=["text", "state"], outputs=["chatbot", "state"])
    def chat(message, history=[]):  # noqa: B006 -- copied per session
        history = [*history, [message, f"echo: {message}"]]
        return history, history

    @app.function(inputs="json", outputs="json")
    def shout(value):
        if isinstance(value, dict):
            raise ValueError("no objects, please")
        return value

    @app.function(inputs=["text", "json"], outputs="number")
    def publish(topic, data):
        app.publish(topic, data)
        return 1

    @app.function(
        inputs="checkbox", outputs="checkbox", timeout=0.05, concurrency_limit=2, max_queue=8
    )
    async def slow(stall):
        if stall:
            await asyncio.sleep(5)
        return stall

    return app


# -- what the server must answer -------------------------------------------------

REFUSALS = frozenset({"duplicate_id", "too_many_pending", "queue_full"})
CHAT = object()  # the result is checked against the session's chat history


@dataclass
class Expected:
    """The answer a submit may get: its result (``data``, if known) or one of ``codes``."""

    codes: frozenset[str]
    data: Any = None
    result_ok: bool = True
    message: str = ""


def model(app: App, msg: Submit) -> Expected:
    """What the fuzz app answers to a decoded submit, refusals aside."""
    function = app.functions.get(msg.fn)
    if function is None:
        return Expected(frozenset({"unknown_fn"}), result_ok=False)
    try:
        args = function.check_arguments(msg.data)
    except BadValue:
        return Expected(frozenset({"bad_arguments", *REFUSALS}), result_ok=False)
    codes = REFUSALS | {"cancelled"}
    fn = msg.fn
    if fn == "echo":
        return Expected(codes, [args])
    if fn in ("nap", "shout") and not isinstance(args[0], dict):
        return Expected(codes, args)
    if fn == "shout":
        return Expected(codes | {"fn_error"}, result_ok=False)
    if fn == "count_to":
        k = int(min(abs(args[0]), 5))
        return Expected(codes, [k - 1]) if k else Expected(codes | {"fn_error"}, result_ok=False)
    if fn == "chat":
        return Expected(codes, CHAT, message=args[0])
    if fn == "publish":
        return Expected(codes, [1])
    assert fn == "slow"
    if args[0]:
        return Expected(codes | {"timeout"}, result_ok=False)
    return Expected(codes, [False])


# -- the frame generator ------------------------------------------------------

_CHARS = 'abc xyz 0123456789 {}[]":,\\ é ß 中文 🙂 \t\n\x00\x1f\u2028\ufeff'
_TOKENS = ["{", "}", "[", "]", '"', ",", ":", "\\", "null", "1e999", "-", ".", "true"]


class FrameGenerator:
    """Random client frames from a seeded generator: valid, mutated, and junk."""

    def __init__(self, rng: random.Random, slot: int) -> None:
        self.rng = rng
        self.slot = slot
        self.n = 0
        self.recent: list[Any] = []

    def text(self, limit: int = 12) -> str:
        return "".join(self.rng.choice(_CHARS) for _ in range(self.rng.randint(0, limit)))

    def value(self, depth: int = 0) -> Any:
        r = self.rng.random()
        if depth < 3 and r < 0.15:
            return [self.value(depth + 1) for _ in range(self.rng.randint(0, 4))]
        if depth < 3 and r < 0.25:
            return {self.text(4): self.value(depth + 1) for _ in range(self.rng.randint(0, 3))}
        return self.rng.choice(
            [
                None,
                True,
                False,
                self.rng.randint(-(2**63), 2**63 - 1),
                self.rng.randint(-5, 5),
                self.rng.uniform(-1e6, 1e6),
                self.text(),
            ]
        )

    def new_id(self) -> Any:
        self.n += 1
        id_ = self.n + 10**6 * self.slot if self.rng.random() < 0.5 else f"c{self.slot}-{self.n}"
        self.recent = [*self.recent[-15:], id_]
        return id_

    def args(self, fn: str) -> list[Any]:
        rng = self.rng
        if fn == "echo":
            return [self.text(), rng.choice([rng.randint(-(10**9), 10**9), rng.uniform(-9, 9)])]
        if fn == "nap":
            return [rng.uniform(0, 0.02)]
        if fn == "count_to":
            return [rng.randint(0, 6)]
        if fn == "chat":
            return [self.text()]
        if fn in ("shout",):
            return [self.value()]
        if fn == "publish":
            return [rng.choice(TOPICS[:3]), self.value()]
        return [rng.random() < 0.2]

    def valid(self) -> dict[str, Any]:
        rng = self.rng
        r = rng.random()
        if r < 0.65:
            fn = rng.choice(["echo", "nap", "count_to", "chat", "shout", "publish", "slow"])
            return {"type": "submit", "id": self.new_id(), "fn": fn, "data": self.args(fn)}
        if r < 0.78:
            target = rng.choice(self.recent) if self.recent and rng.random() < 0.8 else "nope"
            return {"type": "cancel", "id": target}
        if r < 0.88:
            return {"type": "subscribe", "topic": rng.choice(TOPICS)}
        if r < 0.93:
            return {"type": "unsubscribe", "topic": rng.choice(TOPICS)}
        return {"type": "ping"}

    def mutate_bytes(self, frame: bytes) -> str:
        data = bytearray(frame)
        rng = self.rng
        for _ in range(rng.randint(1, 3)):
            at = rng.randint(0, len(data))
            op = rng.randrange(5)
            if op == 0:
                del data[at : at + rng.randint(1, 4)]
            elif op == 1:
                data[at:at] = rng.choice(_TOKENS).encode()
            elif op == 2 and at < len(data):
                data[at] = rng.randrange(32, 127)
            elif op == 3:
                data[at:at] = data[at : at + rng.randint(1, 12)]
            else:
                del data[at:]
        return data.decode("utf-8", errors="replace")

    def mutate_fields(self, message: dict[str, Any]) -> dict[str, Any]:
        key = self.rng.choice(["type", "id", "fn", "data", "topic", "extra"])
        if self.rng.random() < 0.4:
            message.pop(key, None)
        else:
            message[key] = self.value()
        return message

    def frame(self) -> tuple[str, str | bytes]:
        """One frame: ("text", str) or ("binary", bytes)."""
        rng = self.rng
        r = rng.random()
        if r < 0.55:
            return "text", orjson.dumps(self.valid()).decode()
        if r < 0.75:
            return "text", self.mutate_bytes(orjson.dumps(self.valid()))
        if r < 0.85:
            return "text", orjson.dumps(self.mutate_fields(self.valid())).decode()
        if r < 0.92:
            return "text", orjson.dumps(self.value()).decode()
        if r < 0.97:
            return "text", self.text(40)
        return "binary", rng.randbytes(rng.randint(0, 40))

    def breaker(self) -> tuple[str, bytes, int]:
        """A frame that ends the connection, and its close code."""
        if self.rng.random() < 0.5:
            bad = self.rng.choice([b"\xff", b"\xe2\x82", b"\xc0\xaf", b"\xed\xa0\x80"])
            return "text", b'{"type": "ping", "x": "' + bad + b'"}', 1007
        size = MAX_MESSAGE_SIZE + self.rng.randint(1, 4000)
        kind = self.rng.choice(["text", "binary"])
        return kind, b'{"type": "ping", "pad": "' + b"p" * size + b'"}', 1009


# -- one fuzzing connection ------------------------------------------------------


@dataclass
class Tally:
    frames: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)


class FuzzConnection:
    """A raw connection that sends frames and accounts for every answer."""

    def __init__(self, app: App, ws: aiohttp.ClientWebSocketResponse, tally: Tally) -> None:
        self.app = app
        self.ws = ws
        self.tally = tally
        self.expected: Counter[tuple[Any, ...]] = Counter()  # answers not keyed by id
        self.submits: dict[tuple[type, Any], Expected] = {}
        self.seen_ids: set[tuple[type, Any]] = set()
        self.outstanding = 0
        self.topics: set[str] = set()
        self.history: list[list[str]] = []
        self.trace: deque[str] = deque(maxlen=400)  # shown when a chat history is wrong
        self.changed = asyncio.Event()
        self.close_code: int | None = None
        self.reader = asyncio.get_running_loop().create_task(self._read())

    # Submit ids are keyed with their type: 1 and "1" are different ids.
    @staticmethod
    def key(id_: Any) -> tuple[type, Any]:
        return (type(id_), id_)

    def expect(self, kind: str, payload: str | bytes) -> bool:
        """Record what the server must answer to this frame; False: do not send it.

        A frame whose submit reuses the id of a submit still unanswered is
        skipped, so that every answer names exactly one submit (whether such a
        frame meets a ``duplicate_id`` depends on timing; test_transport covers it).
        """
        if kind == "binary":
            self._add(("bad_message", None))
            return True
        try:
            msg = decode_client(payload)
        except RemoteProtocolError as exc:
            self._add((exc.code, self.key(exc.id) if exc.id is not None else None))
            return True
        if isinstance(msg, Submit):
            key = self.key(msg.id)
            if key in self.submits:
                return False
            self.submits[key] = model(self.app, msg)
            self.trace.append(f"sent submit {msg.id!r} {msg.fn} {msg.data!r:.40}")
            self.seen_ids.add(key)
            self.outstanding += 1
        elif isinstance(msg, Ping):
            self._add(("pong",))
        elif isinstance(msg, Subscribe):
            self._add(("subscribe", msg.topic))
        elif isinstance(msg, Unsubscribe):
            self._add(("unsubscribed", msg.topic))
        else:
            assert isinstance(msg, Cancel)  # no answer of its own
            self.trace.append(f"sent cancel {msg.id!r}")
        return True

    def _add(self, key: tuple[Any, ...]) -> None:
        self.expected[key] += 1
        self.outstanding += 1

    def _take(self, key: tuple[Any, ...], msg: dict[str, Any]) -> None:
        assert self.expected[key] > 0, f"unexpected answer {msg}"
        self.expected[key] -= 1
        self.outstanding -= 1

    async def _read(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,  # we are closing it ourselves
                aiohttp.WSMsgType.CLOSED,
            ):
                # The code of the server's close frame (none if we closed it ourselves).
                self.close_code = msg.data if msg.type is aiohttp.WSMsgType.CLOSE else None
                self.changed.set()
                return
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            self.on_message(orjson.loads(msg.data))
            self.changed.set()

    def on_message(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        self.tally.answers[kind if kind != "error" else msg["code"]] += 1
        if kind == "error" and msg["code"] in ("bad_json", "bad_message"):
            id_ = msg["id"]
            self._take((msg["code"], self.key(id_) if id_ is not None else None), msg)
        elif kind == "error" and "topic" in msg:
            assert msg["code"] in ("forbidden_topic", "too_many_subscriptions"), msg
            assert msg["id"] is None
            if msg["code"] == "forbidden_topic":
                assert not self.app.topic_allowed(msg["topic"]), msg
            self._take(("subscribe", msg["topic"]), msg)
        elif kind in ("result", "error"):
            self.on_answer(msg)
        elif kind == "pong":
            assert msg == {"type": "pong"}
            self._take(("pong",), msg)
        elif kind == "subscribed":
            assert self.app.topic_allowed(msg["topic"]), msg
            self.topics.add(msg["topic"])
            self._take(("subscribe", msg["topic"]), msg)
        elif kind == "unsubscribed":
            self.topics.discard(msg["topic"])
            self._take(("unsubscribed", msg["topic"]), msg)
        elif kind in ("queued", "started", "partial"):
            assert self.key(msg["id"]) in self.seen_ids, msg
        elif kind == "event":
            assert msg["topic"] in self.topics, msg
        else:
            raise AssertionError(f"a message of unknown type: {msg}")

    def on_answer(self, msg: dict[str, Any]) -> None:
        """A submit's one answer: its result, or an error it is allowed to get."""
        self.trace.append(f"got {msg['type']} {msg['id']!r} {msg.get('code', '')}")
        expected = self.submits.pop(self.key(msg["id"]), None)
        assert expected is not None, f"an answer for no submit in flight: {msg}"
        self.outstanding -= 1
        if msg["type"] == "error":
            assert msg["code"] in expected.codes, (msg, expected)
            return
        assert expected.result_ok, (msg, expected)
        if expected.data is CHAT:
            self.history.append([expected.message, f"echo: {expected.message}"])
            assert msg["data"] == [self.history], history_diff(msg, self.history, self.trace)
        else:
            assert msg["data"] == expected.data, (msg, expected)

    def __str__(self) -> str:
        waiting = [key for key, n in self.expected.items() if n] + list(self.submits.items())
        return f"unanswered: {waiting}"

    async def settle(self, limit: float = 20) -> None:
        """Wait (at most ``limit`` seconds) until every frame sent so far has had its answer."""
        deadline = time.monotonic() + limit
        while self.outstanding:
            if self.reader.done():
                self.reader.result()  # raises what the reader found
                raise AssertionError(f"closed ({self.close_code}) with answers outstanding")
            self.changed.clear()
            left = deadline - time.monotonic()
            assert left > 0, f"no answer in {limit} s for {self.outstanding} frames: {self}"
            waiter = asyncio.ensure_future(self.changed.wait())
            try:
                await asyncio.wait(
                    [self.reader, waiter], timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                waiter.cancel()
        if self.reader.done():
            self.reader.result()


def history_diff(msg: dict[str, Any], history: list[list[str]], trace: deque[str]) -> str:
    got = msg["data"][0]
    at = next((i for i, (a, b) in enumerate(zip(got, history, strict=False)) if a != b), None)
    return (
        f"chat {msg['id']}: {len(got)} turns, expected {len(history)}; first difference at {at}"
        + "\n".join(["", *trace])
    )


def wait_until(condition: Callable[[], bool], limit: float = 10) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


async def send(ws: aiohttp.ClientWebSocketResponse, kind: str, payload: str | bytes) -> None:
    if kind == "binary":
        await ws.send_bytes(payload if isinstance(payload, bytes) else payload.encode())
    elif isinstance(payload, bytes):
        await ws.send_frame(payload, aiohttp.WSMsgType.TEXT)
    else:
        await ws.send_str(payload)


async def fuzz_slot(
    srv: Any,
    app: App,
    http: aiohttp.ClientSession,
    rng: random.Random,
    slot: int,
    budget: int,
    tally: Tally,
) -> None:
    """Send ``budget`` frames in batches; sometimes end a batch with a breaking frame."""
    gen = FrameGenerator(rng, slot)
    conn: FuzzConnection | None = None
    sent = 0
    while sent < budget:
        if conn is None:
            ws = await http.ws_connect(srv.ws_url, max_msg_size=0)
            welcome = orjson.loads((await asyncio.wait_for(ws.receive(), 10)).data)
            assert welcome["type"] == "welcome"
            conn = FuzzConnection(app, ws, tally)
        for _ in range(min(rng.randint(5, 80), budget - sent)):
            kind, payload = gen.frame()
            while not conn.expect(kind, payload):
                kind, payload = gen.frame()
            await send(conn.ws, kind, payload)
            sent += 1
        await conn.settle()
        if rng.random() < 0.1 and sent < budget:
            kind, payload, code = gen.breaker()
            await send(conn.ws, kind, payload)
            sent += 1
            await asyncio.wait_for(conn.reader, 10)
            assert conn.close_code == code
            tally.closes[code] += 1
            conn = None
    tally.frames += sent
    if conn is not None:
        await conn.ws.close()
        await asyncio.wait_for(conn.reader, 10)


async def chat_control(srv: Any, done: asyncio.Event) -> int:
    """Chat until the fuzzers are done; the history must be exactly this session's turns."""
    turns: list[list[str]] = []
    async with tether.connect(srv.ws_url) as c:
        while not done.is_set() or len(turns) < 3:
            text = f"turn {len(turns)}"
            turns.append([text, f"echo: {text}"])
            assert await asyncio.wait_for(c.submit("chat", text), 30) == turns
    return len(turns)


async def test_fuzzed_frames_get_documented_answers_and_never_disturb_a_chatting_session(
    serve_app, caplog
):
    caplog.set_level(logging.WARNING)
    app = fuzz_app()
    srv = serve_app(app, **SETTINGS)
    rng = random.Random(SEED)
    tally = Tally()
    done = asyncio.Event()
    budgets = [FRAMES // CONNECTIONS] * CONNECTIONS
    try:
        async with aiohttp.ClientSession() as http:
            control = asyncio.create_task(chat_control(srv, done))
            slots = [
                asyncio.create_task(
                    fuzz_slot(srv, app, http, random.Random(rng.random()), i, budget, tally)
                )
                for i, budget in enumerate(budgets)
            ]
            try:
                await asyncio.gather(*slots)
                done.set()
                turns = await asyncio.wait_for(control, 30)
            finally:
                for task in [*slots, control]:
                    task.cancel()
    except AssertionError as exc:
        raise AssertionError(f"{exc} (TETHER_FUZZ_SEED={SEED})") from exc
    assert tally.frames == sum(budgets)
    assert turns >= 3
    # The server is alive and has let go of every session and every queue slot.
    async with aiohttp.ClientSession() as http, http.get(srv.url + "/healthz") as resp:
        assert resp.status == 200
    wait_until(lambda: srv.call(lambda: len(srv.server.sessions)) == 0)
    for function in app.functions.values():
        gate = srv.call(lambda f=function: srv.server.gate(f))
        assert srv.call(lambda g=gate: (len(g), g.running)) == (0, 0)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    # The run exercised what it claims to (a shape check, not a timing one).
    assert {"result", "bad_json", "bad_message", "bad_arguments", "pong"} <= set(tally.answers)
