"""tether.js, the browser client library, driven inside real Chromium against a real server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from tests.browser.helpers import Pages, run_js
from tests.conftest import RunningServer, free_port
from tether import App


def small_app(started: threading.Event | threading.Semaphore | None = None) -> App:
    app = App("small")

    @app.function(inputs="text", outputs="text")
    def one(x: str) -> str:
        return x.upper()

    @app.function(inputs="text", outputs=["text", "number"])
    def two(x: str) -> tuple[str, int]:
        return x, len(x)

    @app.function()
    def nothing() -> None:
        return None

    @app.function(outputs="text")
    async def forever() -> str:
        if isinstance(started, threading.Event):
            started.set()
        elif started is not None:
            started.release()
        await asyncio.sleep(3600)
        return "never"

    return app


def test_submit_unwraps_one_output_and_gives_several_as_an_array(
    pages: Pages, serve_app: Callable[..., RunningServer]
) -> None:
    page = pages.open(serve_app(small_app()).url)
    assert run_js(
        page,
        """
        const client = tether.connect();
        await within(client.ready);
        const outputs = [
            await within(client.submit("one", "abc")),
            await within(client.submit("two", "abcd")),
            await within(client.submit("nothing")),
        ];
        client.close();
        return outputs;
        """,
    ) == ["ABC", ["abcd", 4], []]


def test_a_refused_submit_rejects_with_a_tether_error_carrying_the_servers_code(
    pages: Pages, serve_app: Callable[..., RunningServer]
) -> None:
    page = pages.open(serve_app(small_app()).url)
    errors = run_js(
        page,
        """
        const client = tether.connect();
        await within(client.ready);
        const failure = (promise) => within(promise).then(
            () => null,
            (e) => ({typed: e instanceof tether.TetherError, code: e.code, fn: e.fn}));
        const errors = [
            await failure(client.submit("missing", 1)),
            await failure(client.submit("one", 42)),
        ];
        const stillWorks = await within(client.submit("one", "ok"));
        client.close();
        return {errors, stillWorks};
        """,
    )
    assert errors == {
        "errors": [
            {"typed": True, "code": "unknown_fn", "fn": "missing"},
            {"typed": True, "code": "bad_arguments", "fn": "one"},
        ],
        "stillWorks": "OK",
    }


def test_in_flight_submits_reject_with_the_servers_shutting_down_when_it_stops(
    pages: Pages, serve_app: Callable[..., RunningServer]
) -> None:
    started = threading.Event()
    server = serve_app(small_app(started), shutdown_timeout=0.2)
    page = pages.open(server.url)
    run_js(
        page,
        """
        const client = tether.connect({baseDelay: 50, maxDelay: 200});
        await within(client.ready);
        window.states = [];
        client.on("state", (e) => window.states.push(e.state));
        window.outcome = within(client.submit("forever")).then(
            () => "resolved",
            (e) => ({typed: e instanceof tether.TetherError, code: e.code}));
        """,
    )
    assert started.wait(10), "the submit never started on the server"
    server.stop()
    outcome = run_js(page, "return await window.outcome;")
    # The server ends the session before it closes: the submit is answered, not dropped.
    assert outcome == {"typed": True, "code": "shutting_down"}
    assert run_js(page, "return window.states[0];") == "reconnecting"


def test_cancelling_a_running_submit_rejects_it_with_code_cancelled(
    pages: Pages, serve_app: Callable[..., RunningServer]
) -> None:
    started = threading.Semaphore(0)
    page = pages.open(serve_app(small_app(started)).url)
    run_js(
        page,
        """
        window.client = tether.connect();
        await within(client.ready);
        window.controller = new AbortController();
        window.jobs = [
            client.submit("forever"),
            client.call("forever", [], {signal: controller.signal}),
        ];
        """,
    )
    for _ in range(2):
        assert started.acquire(timeout=10), "a submit never started on the server"
    outcome = run_js(
        page,
        """
        jobs[0].cancel();
        controller.abort();
        const code = (promise) => within(promise).then(() => "resolved", (e) => e.code);
        return [await code(jobs[0]), await code(jobs[1]), jobs[0].status, jobs[1].status];
        """,
    )
    assert outcome == ["cancelled", "cancelled", "cancelled", "cancelled"]


def test_ping_resolves_with_a_round_trip_time(
    pages: Pages, serve_app: Callable[..., RunningServer]
) -> None:
    page = pages.open(serve_app(small_app()).url)
    rtt = run_js(
        page,
        """
        const client = tether.connect();
        await within(client.ready);
        const rtt = await within(client.ping());
        client.close();
        return rtt;
        """,
    )
    assert isinstance(rtt, (int, float))
    assert rtt >= 0


def test_a_message_over_the_size_limit_is_refused_before_it_is_sent(
    pages: Pages, serve_app: Callable[..., RunningServer]
) -> None:
    page = pages.open(serve_app(small_app(), max_message_size=4096).url)
    assert run_js(
        page,
        """
        const client = tether.connect({maxMessageSize: 4096});
        await within(client.ready);
        const code = await within(client.submit("one", "é".repeat(3000))).then(
            () => "sent", (e) => e.code);
        const after = await within(client.submit("one", "small"));
        client.close();
        return [code, after, client.state];
        """,
    ) == ["too_large", "SMALL", "closed"]


def test_with_no_server_the_client_retries_a_bounded_number_of_times_then_is_offline(
    pages: Pages, serve_app: Callable[..., RunningServer]
) -> None:
    page = pages.open(serve_app(small_app()).url)
    result = run_js(
        page,
        """
        const states = [];
        const client = tether.connect(arg, {baseDelay: 20, maxDelay: 50, maxAttempts: 3});
        client.on("state", (e) => states.push(e.state));
        const early = await within(client.submit("one", "x")).then(() => "sent", (e) => e.code);
        const ready = await within(client.ready).then(() => "connected", (e) => e.code);
        return {early, ready, states, attempts: client.attempt};
        """,
        f"ws://127.0.0.1:{free_port()}/ws",
    )
    assert result == {
        "early": "not_connected",
        "ready": "not_connected",
        "states": ["reconnecting", "reconnecting", "reconnecting", "offline"],
        "attempts": 3,
    }


def test_backoff_delays_grow_exponentially_with_full_jitter_up_to_the_bound(
    pages: Pages, serve_app: Callable[..., RunningServer]
) -> None:
    page = pages.open(serve_app(small_app()).url)
    highest, lowest = run_js(
        page,
        """
        const delays = (random) =>
            Array.from({length: 12}, (_, n) => tether.backoffDelay(n, 100, 5000, random));
        return [delays(() => 0.999999), delays(() => 0)];
        """,
    )
    assert highest == [99, 199, 399, 799, 1599, 3199, 4999, 4999, 4999, 4999, 4999, 4999]
    assert lowest == [0] * 12


def test_a_delta_keeps_a_prefix_of_the_previous_value_and_appends(
    pages: Pages, serve_app: Callable[..., RunningServer]
) -> None:
    page = pages.open(serve_app(small_app()).url)
    assert run_js(
        page,
        """
        const base = [["a", "1"], ["b", "2"]];
        const bad = (() => {
            try { tether.applyDelta(base, {keep: 3, append: []}); return "accepted"; }
            catch (e) { return e.code; }
        })();
        return [
            tether.applyDelta(undefined, {keep: 0, append: [["a", "1"]]}),
            tether.applyDelta(base, {keep: 1, append: [["b", "22"]]}),
            tether.applyDelta(base, {keep: 2, append: []}),
            bad,
        ];
        """,
    ) == [
        [["a", "1"]],
        [["a", "1"], ["b", "22"]],
        [["a", "1"], ["b", "2"]],
        "bad_delta",
    ]
