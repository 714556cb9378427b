"""Protocol v2 on a real server: queues, streaming, cancel, timeouts, topics, rooms, deltas."""

from __future__ import annotations

import asyncio
import gc
import itertools
import threading
import time
from typing import Any

import aiohttp
import orjson
import pytest

import tether
from tether import App
from tether.demo import create_app


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    return orjson.loads(msg.data)  # type: ignore[no-any-return]


async def receive_until(ws, predicate, limit: int = 1000) -> list[dict[str, Any]]:
    """Every message up to and including the first that satisfies ``predicate``."""
    seen = []
    for _ in range(limit):
        msg = await receive(ws)
        seen.append(msg)
        if predicate(msg):
            return seen
    raise AssertionError(f"no matching message in {limit}: {seen[-5:]}")


def wait_until(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


# -- queue -------------------------------------------------------------------


def gated_app(**options: Any) -> tuple[App, threading.Event]:
    app = App()
    gate = threading.Event()

    @app.function(inputs="number", outputs="number", **options)
    def slow(n):
        gate.wait(10)
        return n

    @app.function(inputs="number", outputs="number")
    def fast(n):
        return n

    return app, gate


async def test_a_submit_that_never_waits_gets_only_its_result(serve_app):
    app, gate = gated_app(concurrency_limit=2)
    gate.set()
    srv = serve_app(app)
    async with aiohttp.ClientSession() as http, http.ws_connect(srv.ws_url) as ws:
        await receive(ws)
        for i in range(10):  # fewer than the default limit (the thread pool size, 16)
            await ws.send_str(
                orjson.dumps({"type": "submit", "id": i, "fn": "fast", "data": [i]}).decode()
            )
        replies = [await receive(ws) for _ in range(10)]
        assert all(r["type"] == "result" for r in replies)
        await ws.send_str('{"type":"submit","id":"s","fn":"slow","data":[1]}')
        assert await receive(ws) == {"type": "result", "id": "s", "data": [1]}


async def test_queue_positions_count_down_as_work_completes_then_started_then_result(serve_app):
    app = App()
    permits = threading.Semaphore(0)

    @app.function(inputs="number", outputs="number", concurrency_limit=1)
    def slow(n):
        assert permits.acquire(timeout=10)
        return n

    srv = serve_app(app, queue_update_interval=0.01)
    async with aiohttp.ClientSession() as http:
        clients = []
        for _ in range(4):
            ws = await http.ws_connect(srv.ws_url)
            await receive(ws)
            clients.append(ws)
        for i, ws in enumerate(clients):
            await ws.send_str(
                orjson.dumps({"type": "submit", "id": i, "fn": "slow", "data": [i]}).decode()
            )
            if i > 0:
                assert await receive(ws) == {"type": "queued", "id": i, "position": i}
        last = clients[3]
        permits.release()
        assert await receive(last) == {"type": "queued", "id": 3, "position": 2}
        permits.release()
        assert await receive(last) == {"type": "queued", "id": 3, "position": 1}
        permits.release()
        assert await receive(last) == {"type": "started", "id": 3}
        permits.release()
        assert await receive(last) == {"type": "result", "id": 3, "data": [3]}
        for i, ws in enumerate(clients[:3]):
            msgs = await receive_until(ws, lambda m: m["type"] == "result")
            assert msgs[-1] == {"type": "result", "id": i, "data": [i]}
            kinds = [m["type"] for m in msgs]
            assert kinds == ["result"] if i == 0 else kinds[-2:] == ["started", "result"]
            positions = [m["position"] for m in msgs if m["type"] == "queued"]
            assert positions == sorted(positions, reverse=True)
            await ws.close()
        await last.close()


async def test_a_full_queue_answers_queue_full_at_once(serve_app):
    app, gate = gated_app(concurrency_limit=1, max_queue=2)
    srv = serve_app(app)
    async with tether.connect(srv.ws_url) as c:
        running = await c.start("slow", 0)
        queued = [await c.start("slow", i) for i in (1, 2)]
        with pytest.raises(tether.TetherError) as info:
            await c.submit("slow", 3)
        assert info.value.code == "queue_full"
        assert await c.submit("fast", 7) == 7  # other functions are not affected
        gate.set()
        assert [(await call.result())[0] for call in (running, *queued)] == [0, 1, 2]


# -- streaming ---------------------------------------------------------------


def streaming_app() -> App:
    app = App()

    @app.function(inputs=["number", "state"], outputs=["json", "state"])
    def count(n, seen=0):
        for i in range(1, n + 1):
            yield {"step": i, "seen": seen}, seen + i

    @app.function(inputs=["number", "state"], outputs=["json", "state"])
    async def acount(n, seen=0):
        for i in range(1, n + 1):
            await asyncio.sleep(0)
            yield {"step": i, "seen": seen}, seen + i

    return app


@pytest.mark.parametrize("fn", ["count", "acount"])
async def test_partials_arrive_in_order_before_the_result_and_the_last_state_is_kept(serve_app, fn):
    srv = serve_app(streaming_app())
    async with tether.connect(srv.ws_url) as c:
        partials: list[Any] = []
        result = await c.submit(fn, 5, on_partial=partials.append)
        assert [p["step"] for p in partials] == [1, 2, 3, 4, 5]
        assert result == {"step": 5, "seen": 0}
        assert await c.submit(fn, 1) == {"step": 1, "seen": 5}


async def test_the_demo_chat_stream_grows_the_reply_word_by_word(serve_app):
    srv = serve_app(create_app())
    async with tether.connect(srv.ws_url) as c:
        steps = [h async for h in c.stream("chat_stream", "hello there")]
        replies = [h[-1][1] for h in steps]
        assert len(replies) > 3
        assert all(b.startswith(a) for a, b in itertools.pairwise(replies))
        history = await c.submit("chat_stream", "again")
        assert [m for m, _ in history] == ["hello there", "again"]


# -- cancel and timeout ------------------------------------------------------


async def test_cancelling_a_queued_submit_removes_it_and_it_ends_cancelled(serve_app):
    app, gate = gated_app(concurrency_limit=1)
    srv = serve_app(app)
    async with tether.connect(srv.ws_url) as c:
        first = await c.start("slow", 1)
        second = await c.start("slow", 2)
        await asyncio.sleep(0.1)
        await second.cancel()
        with pytest.raises(tether.TetherError) as info:
            await second.result()
        assert info.value.code == "cancelled"
        assert srv.call(lambda: len(srv.server.gate(app.functions["slow"]))) == 0
        gate.set()
        assert await first.result() == [1]


async def test_cancelling_a_running_async_generator_stops_it_and_keeps_state(serve_app):
    app = App()
    stopped = threading.Event()

    @app.function(inputs=["text", "state"], outputs=["json", "state"])
    async def forever(x, items=[]):  # noqa: B006
        items.append(x)
        try:
            while True:
                yield list(items), items
                await asyncio.sleep(0.01)
        finally:
            stopped.set()

    @app.function(inputs=["state"], outputs="json")
    def peek(items=[]):  # noqa: B006 -- a different slot: this only proves the session works
        return items

    srv = serve_app(app)
    async with tether.connect(srv.ws_url) as c:
        got_partial = asyncio.Event()
        call = await c.start("forever", "a", on_partial=lambda _: got_partial.set())
        await asyncio.wait_for(got_partial.wait(), 10)
        await call.cancel()
        with pytest.raises(tether.TetherError) as info:
            await call.result()
        assert info.value.code == "cancelled"
        assert stopped.wait(10)
        # The state is as if it never ran: the next run starts from the default again.
        first: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        call = await c.start(
            "forever", "b", on_partial=lambda p: first.done() or first.set_result(p)
        )
        assert await asyncio.wait_for(first, 10) == [["b"]]
        await call.cancel()


async def test_cancelling_a_running_sync_function_discards_its_result_and_state(serve_app):
    app = App()
    entered = threading.Event()
    release = threading.Event()

    @app.function(inputs=["text", "state"], outputs=["json", "state"])
    def slow_append(x, items=[]):  # noqa: B006
        items.append(x)
        entered.set()
        release.wait(10)
        return list(items), items

    srv = serve_app(app)
    async with tether.connect(srv.ws_url) as c:
        call = await c.start("slow_append", "lost")
        assert await asyncio.to_thread(entered.wait, 10)
        await call.cancel()
        with pytest.raises(tether.TetherError) as info:
            await call.result()
        assert info.value.code == "cancelled"
        release.set()
        assert await c.submit("slow_append", "kept") == ["kept"]


async def test_cancelling_an_unknown_or_finished_id_is_harmless(serve_app):
    app, gate = gated_app()
    gate.set()
    srv = serve_app(app)
    async with tether.connect(srv.ws_url) as c:
        assert await c.submit("fast", 1) == 1
        await c.send_raw('{"type":"cancel","id":1}')
        await c.send_raw('{"type":"cancel","id":"never"}')
        await c.ping()
        assert await c.submit("fast", 2) == 2


async def test_a_timeout_ends_the_submit_with_state_unchanged_and_the_session_keeps_working(
    serve_app,
):
    app = App()

    @app.function(inputs=["number", "state"], outputs=["number", "state"], timeout=0.2)
    async def add(delay, total=0):
        total += 1
        await asyncio.sleep(delay)
        return total, total

    srv = serve_app(app)
    async with tether.connect(srv.ws_url) as c:
        assert await c.submit("add", 0) == 1
        with pytest.raises(tether.TetherError) as info:
            await c.submit("add", 5)
        assert info.value.code == "timeout"
        assert await c.submit("add", 0) == 2


async def test_a_client_disconnecting_mid_stream_leaves_nothing_behind(serve_app):
    app = App()
    ended: list[str] = []
    stopped = threading.Event()

    @app.function(inputs="text", outputs="text", concurrency_limit=1)
    async def stream(x):
        try:
            while True:
                yield x
                await asyncio.sleep(0.01)
        finally:
            stopped.set()

    @app.on_session_end
    def end(session):
        ended.append(session.id)

    srv = serve_app(app)
    c = await tether.connect(srv.ws_url)
    other = await tether.connect(srv.ws_url)
    seen = asyncio.Event()
    await c.start("stream", "a", on_partial=lambda _: seen.set())
    queued = await other.start("stream", "b")
    await asyncio.wait_for(seen.wait(), 10)
    await asyncio.sleep(0.05)
    assert queued.position == 1
    await other.close()
    await c.close()
    assert stopped.wait(10)
    wait_until(lambda: srv.call(lambda: len(srv.server.sessions)) == 0)
    wait_until(lambda: len(ended) == 2)
    gate = srv.call(lambda: srv.server.gate(app.functions["stream"]))
    assert srv.call(lambda: (len(gate), gate.running)) == (0, 0)
    assert sorted(ended) == sorted({c.session, other.session})


# -- topics ------------------------------------------------------------------


def topics_app() -> App:
    app = App(topics=["news", "room:*"])

    @app.function(inputs=["text", "json"], outputs="number")
    def publish(topic, data):
        app.publish(topic, data)
        return 1

    return app


async def test_an_event_reaches_every_subscriber_and_no_one_else(serve_app):
    srv = serve_app(topics_app())
    async with (
        tether.connect(srv.ws_url) as a,
        tether.connect(srv.ws_url) as b,
        tether.connect(srv.ws_url) as outsider,
    ):
        await a.subscribe("news")
        await b.subscribe("news")
        await outsider.subscribe("room:x")
        await outsider.submit("publish", "news", {"headline": 1})
        assert await a.next_event("news", timeout=10) == {"headline": 1}
        assert await b.next_event("news", timeout=10) == {"headline": 1}
        await b.unsubscribe("news")
        await a.submit("publish", "news", 2)
        await a.submit("publish", "room:x", 3)
        assert await a.next_event("news", timeout=10) == 2
        assert await outsider.next_event("room:x", timeout=10) == 3
        await b.ping()
        await outsider.ping()
        assert not b._events.get("news") and not outsider._events.get("news")


async def test_subscribing_to_a_topic_the_app_does_not_allow_is_forbidden(serve_app):
    srv = serve_app(topics_app())
    async with tether.connect(srv.ws_url) as c:
        with pytest.raises(tether.TetherError) as info:
            await c.subscribe("secrets")
        assert info.value.code == "forbidden_topic"
        await c.subscribe("room:anything")


async def test_a_subscriber_that_stops_reading_is_closed_and_memory_stays_bounded(serve_app):
    app = topics_app()
    srv = serve_app(app, send_queue_messages=64, send_queue_bytes=1 << 20)
    async with aiohttp.ClientSession() as http:
        # A raw client that subscribes and then never reads again.
        stalled = await http.ws_connect(srv.ws_url, max_msg_size=0, autoping=False)
        await receive(stalled)
        await stalled.send_str('{"type":"subscribe","topic":"news"}')
        assert (await receive(stalled))["type"] == "subscribed"
        session_id = srv.call(lambda: next(iter(srv.server.sessions)))
        async with tether.connect(srv.ws_url) as reader:
            await reader.subscribe("news")
            blob = "x" * 16_000
            for _ in range(4000):  # up to 64 MB, far more than socket buffers hold
                srv.call(lambda: srv.server.hub.publish("news", blob))
                if session_id not in srv.call(lambda: set(srv.server.sessions)):
                    break
                await asyncio.sleep(0.001)  # a pace the reading client keeps up with
            wait_until(lambda: session_id not in srv.call(lambda: set(srv.server.sessions)))
            conns = srv.call(lambda: list(srv.server.connections.values()))
            assert all(c.queued_bytes <= (1 << 20) for c in conns)
            await reader.ping()  # the reader is still served
        stalled_close = await asyncio.wait_for(_drain_until_close(stalled), 30)
        assert stalled_close == 4008
    gc.collect()


async def _drain_until_close(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    while True:
        msg = await ws.receive()
        if msg.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.CLOSING,
        ):
            return ws.close_code


# -- the demo: live scores and chat rooms ------------------------------------


async def test_the_demo_publishes_the_new_top_3_on_scores_after_every_change(serve_app):
    srv = serve_app(create_app())
    async with tether.connect(srv.ws_url) as watcher, tether.connect(srv.ws_url) as player:
        await watcher.subscribe("scores")
        assert await player.submit("track_score", 10) == [10]
        assert await player.submit("track_score", 30) == [30, 10]
        assert await watcher.next_event("scores", timeout=10) == [10]
        assert await watcher.next_event("scores", timeout=10) == [30, 10]


async def test_chat_room_late_joiner_gets_history_and_presence_follows_joins_and_leaves(serve_app):
    # A dropped connection's session ends when its resume grace period is over.
    srv = serve_app(create_app(), resume_grace=0.3)
    async with tether.connect(srv.ws_url) as ann:
        joined = await ann.submit("join_room", "Ann", "lobby")
        assert joined["members"] == ["Ann"] and joined["history"] == []
        assert "room:lobby" in ann.subscribed
        assert await ann.next_event("room:lobby", timeout=10) == {
            "kind": "presence",
            "members": ["Ann"],
        }
        for i in range(3):
            await ann.submit("say", f"message {i}")
        bob = await tether.connect(srv.ws_url, resume=False)  # gone for good when it drops
        joined = await bob.submit("join_room", "Bob", "lobby")
        assert [m["text"] for m in joined["history"]] == ["message 0", "message 1", "message 2"]
        assert joined["members"] == ["Ann", "Bob"]
        events = [await ann.next_event("room:lobby", timeout=10) for _ in range(4)]
        assert [e["kind"] for e in events] == ["message"] * 3 + ["presence"]
        assert events[-1]["members"] == ["Ann", "Bob"]
        await bob.submit("say", "hi Ann")
        said = await ann.next_event("room:lobby", timeout=10)
        assert (said["name"], said["text"]) == ("Bob", "hi Ann")
        # An abrupt disconnect (no leave_room) still updates presence.
        bob.ws.transport.abort()  # no close frame: as if the network dropped
        left = await ann.next_event("room:lobby", timeout=10)
        assert left == {"kind": "presence", "members": ["Ann"]}
        assert await ann.submit("leave_room") == {"left": "lobby"}


async def test_room_history_keeps_only_the_last_100_messages(serve_app):
    srv = serve_app(create_app())
    async with tether.connect(srv.ws_url) as c, tether.connect(srv.ws_url) as late:
        await c.submit("join_room", "Ann", "busy")
        await asyncio.gather(*(c.submit("say", str(i)) for i in range(130)))
        joined = await late.submit("join_room", "Late", "busy")
        assert [m["text"] for m in joined["history"]] == [str(i) for i in range(30, 130)]


# -- deltas ------------------------------------------------------------------


async def test_deltas_over_1000_turns_rebuild_the_full_history_with_flat_bytes(serve_app):
    # (The rate limit lifted: 1000 turns may now run faster than 1000 a second.)
    srv = serve_app(create_app(), max_pending_per_session=2000, submit_rate=100_000)
    async with aiohttp.ClientSession() as http, http.ws_connect(srv.ws_url + "?deltas=1") as raw:
        welcome = await receive(raw)
        assert welcome["deltas"] is True
        sizes = []
        for turn in range(1000):
            await raw.send_str(
                orjson.dumps(
                    {"type": "submit", "id": turn, "fn": "chat", "data": [f"m{turn}"]}
                ).decode()
            )
            msg = await asyncio.wait_for(raw.receive(), 10)
            sizes.append(len(msg.data))
            data = orjson.loads(msg.data)["data"][0]
            assert data["keep"] == turn and len(data["append"]) == 1
        assert max(sizes) - min(sizes) < 16  # only the digits of the turn number grow
    async with tether.connect(srv.ws_url) as c:  # the Python client opts in by default
        assert c.deltas
        for turn in range(1000):
            history = await c.submit("chat", f"m{turn}")
        assert [m for m, _ in history] == [f"m{i}" for i in range(1000)]
    async with tether.connect(srv.ws_url, deltas=False) as full:
        history = await full.submit("chat", "a")
        assert history == [["a", "You said: a"]]


async def test_deltas_apply_to_streamed_partials_too(serve_app):
    srv = serve_app(create_app())
    async with tether.connect(srv.ws_url) as c, tether.connect(srv.ws_url, deltas=False) as f:
        for client in (c, f):
            for text in ("hello", "how are you?"):
                partials: list[Any] = []
                final = await client.submit("chat_stream", text, on_partial=partials.append)
                assert partials[-1] == final
                assert all(p[:-1] == final[:-1] for p in partials)
        assert await c.submit("chat_stream", "x") == await f.submit("chat_stream", "x")


async def test_a_cancel_read_in_the_same_turn_as_its_submit_is_answered_and_cleaned_up(
    serve_app,
):
    app, gate = gated_app()
    gate.set()
    srv = serve_app(app)
    async with aiohttp.ClientSession() as http, http.ws_connect(srv.ws_url) as ws:
        await receive(ws)
        for i in range(5):
            # One TCP write carrying both frames: the server reads them in one go.
            await ws.send_str(
                orjson.dumps({"type": "submit", "id": i, "fn": "slow", "data": [i]}).decode()
            )
            await ws.send_str(orjson.dumps({"type": "cancel", "id": i}).decode())
        answers = [await receive(ws) for _ in range(5)]
        assert sorted(a["id"] for a in answers) == list(range(5))
        assert all(a["type"] in ("result", "error") for a in answers)
        assert srv.call(lambda: [len(s.tasks) for s in srv.server.sessions.values()]) == [0]
        await ws.send_str('{"type":"submit","id":"after","fn":"fast","data":[1]}')
        assert await receive(ws) == {"type": "result", "id": "after", "data": [1]}


async def test_a_wait_shorter_than_the_notice_delay_sends_no_queue_messages(serve_app):
    app = App()

    @app.function(inputs="number", outputs="number", concurrency_limit=1)
    async def brief(n):
        await asyncio.sleep(0.005)
        return n

    srv = serve_app(app, queue_notice_delay=5.0)
    async with aiohttp.ClientSession() as http, http.ws_connect(srv.ws_url) as ws:
        await receive(ws)
        for i in range(5):
            frame = {"type": "submit", "id": i, "fn": "brief", "data": [i]}
            await ws.send_str(orjson.dumps(frame).decode())
        replies = [await receive(ws) for _ in range(5)]
        assert [r["type"] for r in replies] == ["result"] * 5
        assert sorted(r["id"] for r in replies) == list(range(5))
