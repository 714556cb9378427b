"""The per-session state budget on a real server (issue 12, item 3): a submit that
would grow a session's state beyond `max_state_bytes` (default 4 MiB) gets
`state_too_large`, and the state is left exactly as it was."""

from __future__ import annotations

import pytest

import tether
from tether import App, State

MB = 1_000_000  # four of these fit the default 4 MiB budget, five do not


def budget_app() -> App:
    app = App()
    blobs = State(default=[], name="blobs")
    tags = State(factory=set, name="tags")  # not JSON: measured as an array

    @app.function(inputs=["number", blobs], outputs=["number", blobs])
    def grow(n, items):
        items.append("x" * int(n))
        return len(items), items

    @app.function(inputs=["number", blobs], outputs="number")
    def grow_in_place(n, items):  # the slot is not an output: changed in place only
        items.append("y" * int(n))
        return len(items)

    @app.function(inputs=[blobs], outputs=["number", blobs])
    def clear(items):
        return len(items), []

    @app.function(inputs=["number", tags], outputs=["number", tags])
    def tag(n, seen):
        seen.add(str(len(seen)) * int(n))
        return len(seen), seen

    return app


async def test_a_submit_that_would_pass_the_state_budget_gets_state_too_large(serve_app):
    srv = serve_app(budget_app())  # default max_state_bytes: 4 MiB
    async with tether.connect(srv.ws_url) as c, tether.connect(srv.ws_url) as bystander:
        assert [await c.submit("grow", MB) for _ in range(4)] == [1, 2, 3, 4]
        with pytest.raises(tether.TetherError) as refused:
            await c.submit("grow", MB)
        assert refused.value.code == "state_too_large"
        assert "max_state_bytes" in str(refused.value)
        assert await c.submit("grow", 0) == 5  # the refused item was not kept: 4 + this one
        # Changed in place without being returned: measured and rolled back all the same.
        with pytest.raises(tether.TetherError) as refused:
            await c.submit("grow_in_place", MB)
        assert refused.value.code == "state_too_large"
        assert await c.submit("grow_in_place", 0) == 6
        # Another session has a budget of its own; a session that shrinks may grow again.
        assert await bystander.submit("grow", MB) == 1
        assert await c.submit("clear") == 6
        assert await c.submit("grow", MB) == 1


async def test_state_that_is_not_json_is_measured_against_the_budget_too(serve_app):
    srv = serve_app(budget_app())
    async with tether.connect(srv.ws_url) as c:
        assert [await c.submit("tag", MB) for _ in range(4)] == [1, 2, 3, 4]
        with pytest.raises(tether.TetherError) as refused:
            await c.submit("tag", MB)
        assert refused.value.code == "state_too_large"
        assert await c.submit("tag", 1) == 5
