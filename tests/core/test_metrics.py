"""What the server counts, and the Prometheus text it serves at /metrics."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

import tether
from tether import App
from tether.core.metrics import BUCKETS, Metrics, exposition


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a text exposition: (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def no_gauges() -> dict[str, Any]:
    return {"sessions": 0, "parked": 0, "connections": 0, "topics": 0, "functions": {}}


def test_durations_land_in_cumulative_buckets_with_their_sum_and_count():
    metrics = Metrics()
    for seconds in (0.0004, 0.003, 0.003, 100.0):
        metrics.finished("chat", "ok", seconds)
    metrics.finished("chat", "fn_error", 0.02)
    body, content_type = exposition(metrics, no_gauges)
    assert content_type.startswith("text/plain")
    got = samples(body.decode())
    fn = ("function", "chat")
    assert got[("tether_submit_duration_seconds_bucket", (fn, ("le", "0.0005")))] == 1
    assert got[("tether_submit_duration_seconds_bucket", (fn, ("le", "0.005")))] == 3
    assert got[("tether_submit_duration_seconds_bucket", (fn, ("le", "0.025")))] == 4
    assert got[("tether_submit_duration_seconds_bucket", (fn, ("le", str(BUCKETS[-1]))))] == 4
    assert got[("tether_submit_duration_seconds_bucket", (fn, ("le", "+Inf")))] == 5
    assert got[("tether_submit_duration_seconds_count", (fn,))] == 5
    assert got[("tether_submit_duration_seconds_sum", (fn,))] == pytest.approx(100.0264)
    assert got[("tether_submits_total", (fn, ("outcome", "ok")))] == 4
    assert got[("tether_submits_total", (fn, ("outcome", "fn_error")))] == 1


def counting_app() -> App:
    app = App("counted", topics=["news"])

    @app.function(inputs="number", outputs="number")
    def double(n):
        return 2 * n

    @app.function(inputs="number", outputs="number")
    def fail(n):
        raise ValueError("no")

    return app


async def scrape(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as resp:
        return resp.status, await resp.text()


async def test_metrics_count_outcomes_refusals_and_live_sessions(serve_app):
    srv = serve_app(counting_app())
    async with tether.connect(srv.ws_url) as c:
        for n in range(3):
            assert await c.submit("double", n) == 2 * n
        with pytest.raises(tether.TetherError):
            await c.submit("fail", 1)
        with pytest.raises(tether.TetherError):
            await c.submit("nope", 1)
        with pytest.raises(tether.TetherError):
            await c.submit("double", "not a number")
        status, text = await scrape(srv.url)
    assert status == 200
    got = samples(text)
    assert got[("tether_submits_total", (("function", "double"), ("outcome", "ok")))] == 3
    assert got[("tether_submits_total", (("function", "fail"), ("outcome", "fn_error")))] == 1
    assert got[("tether_refused_total", (("code", "unknown_fn"),))] == 1
    assert got[("tether_refused_total", (("code", "bad_arguments"),))] == 1
    assert got[("tether_submit_duration_seconds_count", (("function", "double"),))] == 3
    assert got[("tether_sessions", ())] == 1
    assert got[("tether_connections", ())] == 1
    assert got[("tether_running", (("function", "double"),))] == 0
    assert got[("tether_queued", (("function", "double"),))] == 0


async def test_metrics_can_be_turned_off(serve_app):
    srv = serve_app(counting_app(), metrics=False)
    status, _ = await scrape(srv.url)
    assert status == 404


async def test_connections_the_server_closes_are_counted_by_reason(serve_app):
    srv = serve_app(counting_app(), idle_timeout=0.3, ping_interval=0)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(srv.ws_url)
        while (await ws.receive()).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            pass
        assert ws.close_code == 4001
    _, text = await scrape(srv.url)
    assert samples(text)[("tether_closed_connections_total", (("reason", "idle"),))] == 1
