"""Sessions over a real server: isolation, ordering, rollback, global state."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import orjson
import pytest
import websockets

import tether
from tether import App, State
from tether.demo import create_app


async def test_two_sessions_chatting_at_once_each_see_only_their_own_history(serve_app):
    srv = serve_app(create_app())
    async with tether.connect(srv.ws_url) as alice, tether.connect(srv.ws_url) as bob:
        assert alice.session != bob.session
        for i in range(5):
            a, b = await asyncio.gather(
                alice.submit("chat", f"alice {i}"), bob.submit("chat", f"bob {i}")
            )
        assert [pair[0] for pair in a] == [f"alice {i}" for i in range(5)]
        assert [pair[0] for pair in b] == [f"bob {i}" for i in range(5)]


async def test_a_reconnect_is_a_new_session_with_fresh_default_state(serve_app):
    srv = serve_app(create_app())
    async with tether.connect(srv.ws_url) as first:
        await first.submit("chat", "remember me")
        old = first.session
    async with tether.connect(srv.ws_url) as second:
        history = await second.submit("chat", "hello again")
        assert second.session != old
    assert history == [["hello again", history[0][1]]]


async def test_a_mutable_default_is_never_shared_between_sessions(serve_app):
    app = App()

    @app.function(inputs=["text", "state"], outputs=["json", "state"])
    def remember(item, items=[]):  # noqa: B006
        items.append(item)
        return items, items

    srv = serve_app(app)
    async with tether.connect(srv.ws_url) as a, tether.connect(srv.ws_url) as b:
        assert await a.submit("remember", "x") == ["x"]
        assert await a.submit("remember", "y") == ["x", "y"]
        assert await b.submit("remember", "z") == ["z"]
    assert remember.__defaults__ == ([],)


async def test_scores_from_two_sessions_both_appear_in_each_others_top_3(serve_app):
    srv = serve_app(create_app())
    async with tether.connect(srv.ws_url) as a, tether.connect(srv.ws_url) as b:
        assert await a.submit("track_score", 10) == [10]
        assert await b.submit("track_score", 30) == [30, 10]
        assert await a.submit("track_score", 20) == [30, 20, 10]
        assert await b.submit("track_score", 5) == [30, 20, 10]
        assert await a.submit("track_score", 2.5) == [30, 20, 10]


async def test_200_sessions_of_20_chat_submits_each_have_zero_mismatches(serve_app):
    srv = serve_app(create_app())

    async def user(n: int) -> list[str]:
        async with tether.connect(srv.ws_url) as c:
            history: list[Any] = []
            for turn in range(20):
                history = await c.submit("chat", f"user {n} turn {turn}")
            return [pair[0] for pair in history]

    results = await asyncio.gather(*(user(n) for n in range(200)))
    mismatches = [
        n for n, said in enumerate(results) if said != [f"user {n} turn {t}" for t in range(20)]
    ]
    assert mismatches == []


async def test_100_submits_fired_without_waiting_all_land_in_order(serve_app):
    srv = serve_app(create_app())
    async with websockets.connect(srv.ws_url) as ws:
        await ws.recv()  # welcome
        for i in range(100):
            frame = {"type": "submit", "id": i, "fn": "chat", "data": [str(i)]}
            await ws.send(orjson.dumps(frame).decode())
        replies = [orjson.loads(await ws.recv()) for _ in range(100)]
    assert all(r["type"] == "result" for r in replies)
    final = max(replies, key=lambda r: len(r["data"][0]))
    assert [pair[0] for pair in final["data"][0]] == [str(i) for i in range(100)]
    # Each reply holds exactly the history up to its own message.
    assert sorted(len(r["data"][0]) for r in replies) == list(range(1, 101))
    for r in replies:
        assert len(r["data"][0]) == r["id"] + 1


async def test_1000_concurrent_increments_from_sync_functions_are_exact(serve_app):
    app = App()
    threads: set[str] = set()

    @app.function(outputs="number")
    def bump():
        threads.add(threading.current_thread().name)
        return app.store.sync.incr("hits")

    srv = serve_app(app, thread_pool_size=8)
    clients = [await tether.connect(srv.ws_url) for _ in range(4)]
    try:
        results = await asyncio.gather(
            *(client.submit("bump") for client in clients for _ in range(250))
        )
    finally:
        for client in clients:
            await client.close()
    assert sorted(results) == list(range(1, 1001))
    assert threads and all(name.startswith("tether-fn") for name in threads)


async def test_a_raising_function_fails_only_that_submit_and_leaves_state_unchanged(serve_app):
    app = App()

    @app.function(inputs=["text", "state"], outputs=["json", "state"])
    def note(text, notes=[]):  # noqa: B006
        notes.append(text)  # mutate first, then fail: the mutation must be rolled back
        if text == "boom":
            raise ValueError("no booms allowed")
        return notes, notes

    srv = serve_app(app)
    async with tether.connect(srv.ws_url) as c, tether.connect(srv.ws_url) as other:
        assert await c.submit("note", "a") == ["a"]
        with pytest.raises(tether.TetherError) as info:
            await c.submit("note", "boom")
        assert info.value.code == "fn_error"
        assert "ValueError: no booms allowed" in info.value.message
        assert "Traceback" not in info.value.message
        assert await c.submit("note", "b") == ["a", "b"]
        assert await other.submit("note", "z") == ["z"]


async def test_async_functions_run_on_the_loop_and_keep_session_state(serve_app):
    app = App()

    @app.function(inputs=["number", "state"], outputs=["number", "state"])
    async def total(x, acc=0):
        seen.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        return acc + x, acc + x

    seen: list[asyncio.AbstractEventLoop] = []
    srv = serve_app(app)
    async with tether.connect(srv.ws_url) as c:
        assert await c.submit("total", 2) == 2
        assert await c.submit("total", 3.5) == 5.5
    assert seen == [srv.loop, srv.loop]


async def test_submits_that_share_no_state_do_not_wait_for_each_other(serve_app):
    app = App()
    release = asyncio.Event()
    loop_box: dict[str, Any] = {}

    @app.function(inputs=["text", "state"], outputs="text")
    async def slow(x, s=None):
        loop_box["loop"] = asyncio.get_running_loop()
        await release.wait()
        return "slow done"

    @app.function(inputs="text", outputs="text")
    async def fast(x):
        return "fast done"

    srv = serve_app(app)
    async with tether.connect(srv.ws_url) as c:
        slow_call = asyncio.ensure_future(c.submit("slow", "x"))
        assert await c.submit("fast", "y") == "fast done"
        assert not slow_call.done()
        srv.loop.call_soon_threadsafe(release.set)
        assert await slow_call == "slow done"


async def test_submits_on_the_same_state_run_one_at_a_time_in_arrival_order(serve_app):
    app = App()
    shared = State(default=[])
    running = {"now": 0, "max": 0}

    @app.function(inputs=["number", shared], outputs=["json", shared])
    async def push(n, items):
        running["now"] += 1
        running["max"] = max(running["max"], running["now"])
        await asyncio.sleep(0.001 * (n % 3))
        running["now"] -= 1
        return [*items, n], [*items, n]

    @app.function(inputs=[shared], outputs="json")
    def peek(items):
        return items

    srv = serve_app(app)
    async with tether.connect(srv.ws_url) as c:
        await asyncio.gather(*(c.submit("push", n) for n in range(30)))
        assert await c.submit("peek") == list(range(30))
    assert running["max"] == 1


async def test_a_session_over_its_pending_cap_gets_too_many_pending(serve_app):
    app = App()
    gate = asyncio.Event()

    @app.function(outputs="text")
    async def wait():
        await gate.wait()
        return "ok"

    srv = serve_app(app, max_pending_per_session=3)
    async with tether.connect(srv.ws_url) as c:
        calls = [asyncio.ensure_future(c.submit("wait")) for _ in range(3)]
        await c.ping()  # the three submits have been admitted
        with pytest.raises(tether.TetherError) as info:
            await c.submit("wait")
        assert info.value.code == "too_many_pending"
        srv.loop.call_soon_threadsafe(gate.set)
        assert await asyncio.gather(*calls) == ["ok", "ok", "ok"]
        assert await c.submit("wait") == "ok"


async def test_on_session_end_runs_exactly_once_per_session(serve_app):
    app = App()
    ended: list[str] = []

    @app.function(outputs="text")
    def hello():
        return "hi"

    @app.on_session_end
    def goodbye(session):
        ended.append(session.id)

    srv = serve_app(app)
    ids = []
    for _ in range(3):
        async with tether.connect(srv.ws_url) as c:
            await c.submit("hello")
            ids.append(c.session)
    for _ in range(100):
        if len(ended) == 3:
            break
        await asyncio.sleep(0.02)
    srv.stop()
    assert sorted(ended) == sorted(ids)


async def test_on_session_end_runs_for_open_sessions_at_shutdown(serve_app):
    app = App()
    ended: list[str] = []
    app.on_session_end(lambda session: ended.append(session.id))
    srv = serve_app(app)
    async with tether.connect(srv.ws_url) as c:
        await c.ping()
        srv.stop()
        assert ended == [c.session]


async def test_named_state_is_shared_by_the_functions_of_one_session_only(serve_app):
    app = App()
    cart = State(default=[])

    @app.function(inputs=["text", cart], outputs=["json", cart])
    def add(item, items):
        return [*items, item], [*items, item]

    @app.function(inputs=[cart], outputs="number")
    def count(items):
        return len(items)

    srv = serve_app(app)
    async with tether.connect(srv.ws_url) as a, tether.connect(srv.ws_url) as b:
        await a.submit("add", "apple")
        await a.submit("add", "pear")
        assert await a.submit("count") == 2
        assert await b.submit("count") == 0
