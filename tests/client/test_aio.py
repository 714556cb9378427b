"""The asyncio client against a real server: outputs come back exactly as the function
returned them, with deltas decoded by the output's declared component."""

from __future__ import annotations

from typing import Any

import tether
from tether import App


def delta_shaped_app() -> App:
    app = App()

    @app.function(inputs=["json"], outputs=["json"])
    def echo(value: Any) -> Any:
        return value

    @app.function(inputs=["text", "state"], outputs=["chatbot", "json", "state"])
    def chat(message: str, history: list[list[str]] | None = None) -> Any:
        history = [*(history or []), [message, "ok"]]
        return history, {"keep": 0, "append": [message]}, history

    return app


async def test_a_json_output_shaped_like_a_delta_reaches_the_caller_unchanged(serve_app):
    srv = serve_app(delta_shaped_app())
    async with tether.connect(srv.ws_url) as c:
        assert c.deltas
        assert await c.submit("echo", {"keep": 0, "append": [1]}) == {"keep": 0, "append": [1]}
        odd = {"keep": 2, "append": ["x"], "other": 1}
        assert await c.submit("echo", odd) == odd
        assert await c.submit("echo", [1, 2]) == [1, 2]  # the connection is still fine


async def test_a_chatbot_output_is_rebuilt_while_a_json_output_beside_it_is_left_alone(serve_app):
    srv = serve_app(delta_shaped_app())
    async with tether.connect(srv.ws_url) as c:
        history, extra = await c.submit("chat", "a")
        assert history == [["a", "ok"]] and extra == {"keep": 0, "append": ["a"]}
        history, extra = await c.submit("chat", "b")
        assert history == [["a", "ok"], ["b", "ok"]] and extra == {"keep": 0, "append": ["b"]}


async def test_without_deltas_the_same_outputs_arrive_whole(serve_app):
    srv = serve_app(delta_shaped_app())
    async with tether.connect(srv.ws_url, deltas=False) as c:
        assert not c.deltas
        assert await c.submit("echo", {"keep": 0, "append": [1]}) == {"keep": 0, "append": [1]}
        history, _ = await c.submit("chat", "a")
        assert history == [["a", "ok"]]
