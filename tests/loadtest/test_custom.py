"""Custom scenario files: ``async def user(client, index)`` on the regular client API."""

from __future__ import annotations

from tests.loadtest.conftest import loadtest
from tether.demo import create_app


def test_a_custom_scenario_file_drives_the_regular_client_api(serve_app, tmp_path):
    scenario = tmp_path / "scenario.py"
    scenario.write_text(
        "async def user(client, index):\n"
        "    history = await client.submit('chat', f'user {index}')\n"
        "    assert history[-1][0] == f'user {index}'\n"
        "    await client.submit('no_such_function')\n"
    )
    # Each user loops as fast as the server answers: on a fast machine that passes the
    # default 1000 messages/s per session, and only unknown_fn is expected here.
    srv = serve_app(create_app(), submit_rate=1e6, submit_burst=1_000_000)
    status, result = loadtest(
        srv.url, "--scenario", str(scenario), "--users", "3", "--duration", "1", tmp_path=tmp_path
    )
    assert status == 0
    assert result["submits_ok"] > 0
    assert result["errors"]["unknown_fn"] > 0
    assert set(result["errors"]) == {"unknown_fn"}


def test_a_custom_scenario_can_ask_for_a_new_session_per_call_and_fail_the_check(
    serve_app, tmp_path
):
    scenario = tmp_path / "reconnecting.py"
    scenario.write_text(
        "RECONNECT = True\n"
        "async def user(client, index):\n"
        "    history = await client.submit('chat', 'hello')\n"
        "    if len(history) != 1:\n"
        "        raise ValueError('a new session should start with an empty history')\n"
        "    if index == 0:\n"
        "        raise ValueError('user 0 always fails')\n"
    )
    srv = serve_app(create_app())
    status, result = loadtest(
        srv.url, "--scenario", str(scenario), "--users", "2", "--duration", "1", "--check",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert status == 1
    assert result["connects"] > 2
    assert result["errors"] == {"scenario:ValueError": result["check"]["violations"]}
    assert all("user 0 always fails" in v for v in result["check"]["examples"])
