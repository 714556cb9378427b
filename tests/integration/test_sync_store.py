"""A real server: sync functions in the thread pool hammering ``app.store.sync`` from
many sessions at once lose no update, and their board events arrive in change order."""

from __future__ import annotations

import asyncio

import tether
from tether import App

SESSIONS, SUBMITS, PER_SUBMIT = 20, 5, 1000


def hammer_app() -> App:
    app = App(topics=["board"])

    @app.function(inputs="number", outputs="number")
    def hammer(n):
        for _ in range(int(n)):
            app.store.sync.incr("hits")
        return app.store.sync.get("hits")

    @app.function(inputs="number", outputs="json")
    def score(n):
        return app.store.sync.lb_add("board", f"m{n}", n, top=10_000, topic="board")

    @app.function(inputs=[], outputs="number")
    def hits():
        return app.store.sync.get("hits", 0)

    return app


async def test_100k_sync_increments_from_20_sessions_are_all_counted(serve_app):
    srv = serve_app(hammer_app())

    async def user() -> None:
        async with tether.connect(srv.ws_url) as c:
            await asyncio.gather(*(c.submit("hammer", PER_SUBMIT) for _ in range(SUBMITS)))

    await asyncio.wait_for(asyncio.gather(*(user() for _ in range(SESSIONS))), 120)
    async with tether.connect(srv.ws_url) as c:
        assert await c.submit("hits") == SESSIONS * SUBMITS * PER_SUBMIT


async def test_board_events_from_concurrent_sync_writers_grow_one_score_at_a_time(serve_app):
    srv = serve_app(hammer_app())
    total = 200
    async with tether.connect(srv.ws_url) as watcher:
        await watcher.subscribe("board")

        async def user(u: int) -> None:
            async with tether.connect(srv.ws_url) as c:
                await asyncio.gather(*(c.submit("score", u * 100 + i) for i in range(20)))

        await asyncio.wait_for(asyncio.gather(*(user(u) for u in range(total // 20))), 60)
        events = [await watcher.next_event("board", timeout=10) for _ in range(total)]
    previous: set[float] = set()
    for k, event in enumerate(events, 1):
        assert len(event) == k and event == sorted(event, reverse=True)
        assert previous < set(event)
        previous = set(event)
