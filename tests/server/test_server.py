"""The server lends the App a runtime while it serves, and only one server at a time."""

from __future__ import annotations

import pytest

import tether
from tether import App, AppError
from tether.server import serve


def small_app() -> App:
    app = App("one")

    @app.function(inputs=["text"], outputs=["text"])
    def echo(text: str) -> str:
        return text

    return app


def test_an_app_that_is_not_served_has_no_runtime_and_cannot_publish() -> None:
    app = small_app()
    assert app.runtime is None
    with pytest.raises(RuntimeError, match="only while the app is being served"):
        app.publish("t", 1)


async def test_a_served_app_acts_through_the_servers_runtime(serve_app) -> None:
    app = small_app()
    srv = serve_app(app)
    runtime = srv.call(lambda: app.runtime)
    assert runtime is srv.server.runtime
    assert runtime.backend is app.store.backend
    async with tether.connect(srv.ws_url) as c:
        assert await c.submit("echo", "hi") == "hi"


async def test_a_second_server_on_the_same_app_is_refused_while_the_first_serves(serve_app):
    app = small_app()
    serve_app(app)
    with pytest.raises(AppError, match="already being served by another server"):
        await serve(app, "127.0.0.1", 0)


def test_an_app_can_be_served_again_once_its_server_stopped(serve_app) -> None:
    app = small_app()
    first = serve_app(app)
    first.stop()
    assert app.runtime is None
    second = serve_app(app)
    assert second.call(lambda: app.runtime) is second.server.runtime


def test_the_clash_is_an_app_error() -> None:
    assert issubclass(AppError, tether.TetherException)
