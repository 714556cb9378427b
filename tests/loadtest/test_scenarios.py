"""The built-in scenarios against the demo: what they measure, and that their checks pass."""

from __future__ import annotations

from tests.loadtest.conftest import loadtest
from tether.demo import create_app


def test_the_chat_scenario_passes_its_check_against_the_demo(serve_app, tmp_path):
    srv = serve_app(create_app())
    status, result = loadtest(
        srv.url, "--scenario", "chat", "--users", "5", "--duration", "1", "--turns", "3",
        "--check", tmp_path=tmp_path,
    )  # fmt: skip
    assert status == 0
    assert result["submits_ok"] > 0
    assert result["errors"] == {}
    assert result["check"]["violations"] == 0
    assert result["check"]["results_checked"] == result["submits_ok"]
    # Conversations of 3 turns: every session was replaced by a new one several times.
    assert result["connects"] > 5
    assert result["latency_ms"]["p50"] <= result["latency_ms"]["p99"] <= result["latency_ms"]["max"]


def test_the_score_scenario_runs_open_loop_over_two_processes(serve_app, tmp_path):
    srv = serve_app(create_app())
    status, result = loadtest(
        srv.ws_url,
        "--scenario", "score", "--users", "4", "--duration", "1.5", "--rate", "200",
        "--procs", "2", "--check",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert status == 0
    assert result["mode"] == "open"
    assert result["check"]["violations"] == 0
    assert result["submits_ok"] > 0
    assert len(result["generator_cpu_percent"]) == 2
    assert result["connects"] == 4


def test_the_rooms_scenario_passes_its_check_against_the_demo(serve_app, tmp_path, capsys):
    srv = serve_app(create_app())
    status, result = loadtest(
        srv.url, "--scenario", "rooms", "--users", "12", "--rooms", "3", "--duration", "1.5",
        "--turns", "3", "--check",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert status == 0, result["check"]["examples"]
    assert result["errors"] == {}
    assert result["check"]["violations"] == 0
    assert result["check"]["results_checked"] == result["submits_ok"] > 0
    # Conversations of join, 3 says and leave: every session was replaced several times.
    assert result["connects"] > 12
    events = result["events"]
    # Each message reaches the 4 members of its room, and presence changes are events too.
    assert events["count"] > events["timed"] > result["submits_ok"]
    lat = events["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    assert "events" in capsys.readouterr().out  # a row of the summary


def test_the_rooms_scenario_runs_open_loop_over_two_processes(serve_app, tmp_path):
    srv = serve_app(create_app())
    status, result = loadtest(
        srv.ws_url,
        "--scenario", "rooms", "--users", "6", "--rooms", "2", "--duration", "1.5",
        "--rate", "300", "--turns", "4", "--procs", "2", "--check",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert status == 0, result["check"]["examples"]
    assert result["mode"] == "open"
    assert result["check"]["violations"] == 0
    assert result["submits_ok"] > 0
    # Users 0, 2, 4 share room 0 but not a process with 1, 3, 5: messages from the
    # other process arrive too, and only this process's are timed.
    assert result["events"]["count"] > result["events"]["timed"] > 0


def test_the_rooms_scenario_passes_its_check_with_the_redis_store(
    serve_app, tmp_path, redis_server, redis_namespace
):
    # With Redis, events travel through pub/sub and may arrive after the say's result.
    srv = serve_app(create_app(), store=redis_server.url, namespace=redis_namespace)
    status, result = loadtest(
        srv.url, "--scenario", "rooms", "--users", "8", "--rooms", "2", "--duration", "1.5",
        "--turns", "3", "--check",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert status == 0, result["check"]["examples"]
    assert result["check"]["violations"] == 0
    assert result["events"]["timed"] > result["submits_ok"]
