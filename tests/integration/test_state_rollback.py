"""Against a real server: a function that raises after mutating a long journaled
history leaves it exactly as it was, with output deltas on and off."""

from __future__ import annotations

import pytest

import tether
from tether import App


@pytest.mark.parametrize("deltas", [True, False])
async def test_a_raising_function_leaves_a_long_state_intact(serve_app, deltas):
    app = App()
    history_slot = tether.State(default=[])

    @app.function(inputs=["text", history_slot], outputs=["chatbot", history_slot])
    def chat(message, history):
        history.append([message, f"re: {message}"])
        return history, history

    @app.function(inputs=["text", history_slot], outputs=["chatbot", history_slot])
    def wreck(message, history):
        history.append([message, "never"])
        history[0][1] = "edited"
        del history[10:20]
        history.reverse()
        raise RuntimeError("after mutating")

    srv = serve_app(app)
    async with tether.connect(srv.ws_url, deltas=deltas) as client:
        for i in range(300):
            expected = await client.submit("chat", f"m{i}")
        with pytest.raises(tether.TetherError) as raised:
            await client.submit("wreck", "boom")
        assert raised.value.code == "fn_error"
        after = await client.submit("chat", "after")
    assert after == [*expected, ["after", "re: after"]]
    assert len(after) == 301 and after[0] == ["m0", "re: m0"]
