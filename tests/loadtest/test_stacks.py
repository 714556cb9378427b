"""``--client``: which client stack carries a load test, and the report that names it;
without picows, the aiohttp stack carries it all the same."""

from __future__ import annotations

import sys

import pytest

from tests.loadtest.conftest import loadtest
from tether.demo import create_app
from tether.loadtest import main
from tether.loadtest.stacks import picows_available, resolve_client


@pytest.fixture
def without_picows(monkeypatch):
    """As on a machine where picows is not installed (``import picows`` fails)."""
    monkeypatch.setitem(sys.modules, "picows", None)
    assert not picows_available()


def test_auto_picks_picows_when_it_is_installed():
    assert picows_available()
    assert resolve_client("auto") == "picows"
    assert resolve_client("picows") == "picows"
    assert resolve_client("aiohttp") == "aiohttp"
    with pytest.raises(ValueError, match="unknown client stack"):
        resolve_client("curl")


def test_auto_falls_back_to_aiohttp_without_picows(without_picows):
    assert resolve_client("auto") == "aiohttp"
    with pytest.raises(ValueError, match=r"pip install 'tether\[fast\]'"):
        resolve_client("picows")


@pytest.mark.parametrize("client", ["picows", "aiohttp"])
def test_the_stack_asked_for_runs_and_the_report_names_it(serve_app, tmp_path, capsys, client):
    srv = serve_app(create_app())
    status, result = loadtest(
        srv.url, "--users", "3", "--duration", "1", "--turns", "3", "--check",
        "--client", client, tmp_path=tmp_path,
    )  # fmt: skip
    assert status == 0
    assert result["client"] == client and result["config"]["client"] == client
    assert result["submits_ok"] > 0 and result["check"]["violations"] == 0
    assert f"closed loop, 1 process, client {client}" in capsys.readouterr().out


def test_the_default_stack_is_picows_when_installed(serve_app, tmp_path):
    srv = serve_app(create_app())
    status, result = loadtest(srv.url, "--users", "2", "--duration", "0.5", tmp_path=tmp_path)
    assert status == 0 and result["client"] == "picows"


def test_without_picows_the_aiohttp_stack_carries_the_load(serve_app, tmp_path, without_picows):
    srv = serve_app(create_app())
    status, result = loadtest(
        srv.url, "--users", "3", "--duration", "1", "--turns", "3", "--check", tmp_path=tmp_path
    )
    assert status == 0
    assert result["client"] == "aiohttp"
    assert result["submits_ok"] > 0 and result["check"]["violations"] == 0


def test_asking_for_picows_without_it_is_refused_before_the_run(without_picows, capsys):
    assert main(["ws://127.0.0.1:9/ws", "--client", "picows"]) == 2
    assert "--client picows needs picows" in capsys.readouterr().err


def test_the_rooms_scenario_waits_and_checks_on_picows(serve_app, tmp_path):
    # Rooms conversations pause (Wait) for their own messages: the callback-driven
    # closed loop hands those pauses to a task and takes up again after them.
    srv = serve_app(create_app())
    status, result = loadtest(
        srv.url, "--scenario", "rooms", "--users", "4", "--duration", "1.5", "--turns", "3",
        "--check", "--client", "picows", tmp_path=tmp_path,
    )  # fmt: skip
    assert status == 0, result["check"]["examples"]
    assert result["client"] == "picows" and result["check"]["violations"] == 0
    assert result["events"]["count"] > 0


def test_a_custom_scenario_names_the_stack_it_runs_on(serve_app, tmp_path):
    script = tmp_path / "user.py"
    script.write_text(
        "async def user(client, index):\n    await client.submit('track_score', index)\n"
    )
    srv = serve_app(create_app())
    status, result = loadtest(
        srv.url, "--scenario", str(script), "--users", "2", "--duration", "0.5",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert status == 0 and result["client"] == "websockets"
