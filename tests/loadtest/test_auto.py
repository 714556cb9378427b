"""The auto scenario (the default): any app's own functions, from its welcome."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tests.loadtest.conftest import loadtest
from tether import App
from tether.demo import create_app
from tether.loadtest import main
from tether.loadtest.scenarios.auto import parse_mix
from tether.protocol import encode_error, encode_result, encode_welcome


def make_app() -> App:
    """Six functions: every public component as input and output, session state in three."""
    app = App("six functions")

    @app.function(inputs="text", outputs="text")
    def shout(text):
        return text.upper()

    @app.function(inputs=["number", "state"], outputs=["number", "state"])
    def total(x, acc=0):
        acc += x
        return acc, acc

    @app.function(inputs=["checkbox", "json"], outputs=["json", "checkbox"])
    def wrap(flag, value):
        return {"flag": flag, "value": value}, not flag

    @app.function(inputs=["text", "state"], outputs=["chatbot", "state"])
    def chat(message, history=[]):  # noqa: B006 (copied for every session)
        history.append([message, f"You said: {message}"])
        return history, history

    @app.function(inputs=["chatbot"], outputs="number")
    def count(history):
        return len(history)

    @app.function(inputs=[], outputs="number")
    def tick():
        return 1

    @app.function(inputs=["text", "state"], outputs=["chatbot", "state"])
    def stream(message, history=[]):  # noqa: B006 (copied for every session)
        history.append([message, ""])
        for word in ("one", "two", "three"):
            history[-1][1] += word + " "
            yield history, history

    return app


def _check_fails(raw_server, tmp_path, handler, function):
    """Serve one function by ``handler``, run the auto scenario with --check for half a
    second; it must fail (exit 1). The check's examples."""
    url = raw_server(handler, welcome=encode_welcome("raw", [function]))
    status, result = loadtest(url, "--users", "1", "--duration", "0.5", "--check",
                              tmp_path=tmp_path)  # fmt: skip
    assert status == 1
    return result["check"]["examples"]


def test_the_auto_scenario_passes_its_check_against_an_app_of_its_own(serve_app, tmp_path):
    srv = serve_app(make_app())
    status, result = loadtest(
        srv.url, "--users", "6", "--duration", "1.5", "--turns", "8", "--check",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert status == 0, result["check"]["examples"]
    assert result["config"]["scenario"] == "auto"
    assert result["check"]["violations"] == 0
    assert result["errors"] == {}
    assert result["check"]["results_checked"] == result["submits_ok"] > 0
    # Every function was called, those without inputs and the streaming one too.
    assert set(result["calls"]) == {"shout", "total", "wrap", "chat", "count", "tick", "stream"}
    assert sum(result["calls"].values()) == result["submits_ok"]
    assert result["partials"] >= 3 * result["calls"]["stream"]  # three yields a result


def test_a_partial_of_the_wrong_shape_is_a_violation(raw_server, tmp_path):
    async def handler(submit, send, history):
        await send(orjson.dumps({"type": "partial", "id": submit.id, "data": [5]}))
        await send(encode_result(submit.id, [[["a", "b"]]]))

    examples = _check_fails(
        raw_server, tmp_path, handler, {"name": "s", "inputs": [], "outputs": ["chatbot"]}
    )
    assert "s: a partial: a chatbot output is int" in examples[0]


def test_the_auto_scenario_drives_the_demo_too(serve_app, tmp_path):
    srv = serve_app(create_app())
    status, result = loadtest(
        srv.url, "--users", "4", "--duration", "1", "--check", tmp_path=tmp_path
    )
    assert status == 0, result["check"]["examples"]
    # say before join_room is the demo's fn_error: a documented answer, not a violation.
    assert set(result["errors"]) <= {"fn_error"}
    assert result["submits_ok"] > 0


def test_mix_weights_are_followed(serve_app, tmp_path):
    srv = serve_app(make_app())
    status, result = loadtest(
        srv.url, "--users", "4", "--duration", "1.5", "--mix", "shout=3,total=1", "--check",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert status == 0, result["check"]["examples"]
    calls = result["calls"]
    assert set(calls) == {"shout", "total"}  # functions left out are not called
    assert calls["shout"] + calls["total"] >= 100
    assert 1.5 < calls["shout"] / calls["total"] < 6  # 3 expected: a wide bound


def test_mix_naming_an_unknown_function_is_an_error(serve_app, tmp_path, capsys):
    srv = serve_app(make_app())
    status = main([srv.url, "--quiet", "--duration", "1", "--mix", "shout=1,nope=2"])
    assert status == 2
    err = capsys.readouterr().err
    assert "nope" in err and "shout, total, wrap" in err


def test_mix_syntax():
    assert parse_mix("a=3, b=0.5,c") == (("a", 3.0), ("b", 0.5), ("c", 1.0))
    for bad in ("a=x", "=1", "a=-1", "a=0"):
        with pytest.raises(ValueError):
            parse_mix(bad)


def _one_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_a_scenario_for_functions_the_server_lacks_stops_with_one_line(serve_app, capsys):
    srv = serve_app(make_app())
    for scenario, missing in (("score", "track_score"), ("rooms", "join_room")):
        status = main([srv.url, "--quiet", "--duration", "2", "--scenario", scenario])
        assert status == 1
        line = _one_line(capsys)
        assert f"no function {missing!r}" in line
        assert "shout, total, wrap, chat, count, tick, stream" in line


def test_the_first_unknown_fn_stops_the_run(raw_server, tmp_path, capsys):
    """A server whose welcome lists chat but answers unknown_fn: one submit, then stop."""
    seen: list[int] = []

    async def handler(submit, send, history):
        seen.append(1)
        await send(encode_error(submit.id, "unknown_fn", f"no function {submit.fn!r}"))

    welcome = encode_welcome("raw", [{"name": "chat", "inputs": ["text"], "outputs": ["chatbot"]}])
    url = raw_server(handler, welcome=welcome)
    out = tmp_path / "r.json"
    status = main([url, "--quiet", "--users", "3", "--duration", "3", "--json", str(out)])
    assert status == 1
    assert "no function 'chat' (it has: chat)" in _one_line(capsys)
    result = orjson.loads(out.read_bytes())
    assert result["fatal"]
    # Stopped, not run to the end: at most one submit per user, in flight when the
    # first unknown_fn came back (a run to the end would have made thousands).
    assert len(seen) <= 3


def test_a_run_without_one_success_exits_non_zero_with_or_without_check(raw_server, tmp_path):
    async def handler(submit, send, history):
        await send(encode_error(submit.id, "fn_error", "always"))

    welcome = encode_welcome("raw", [{"name": "f", "inputs": ["text"], "outputs": ["text"]}])
    url = raw_server(handler, welcome=welcome)
    for extra in ((), ("--check",)):
        status, result = loadtest(url, "--users", "2", "--duration", "0.5", *extra,
                                  tmp_path=tmp_path)  # fmt: skip
        assert status == 1
        assert result["submits_ok"] == 0 and result["errors"]["fn_error"] > 0


def test_rate_limited_answers_pause_the_session(raw_server, tmp_path):
    """Every other submit is rate_limited with retry_after 0.2 s: the auto scenario waits."""
    count = {"n": 0}

    async def handler(submit, send, history):
        count["n"] += 1
        if count["n"] % 2:
            frame = orjson.dumps(
                {"type": "error", "id": submit.id, "code": "rate_limited",
                 "message": "slow down", "retry_after": 0.2}
            )  # fmt: skip
            await send(frame)
        else:
            await send(encode_result(submit.id, [submit.data[0]]))

    welcome = encode_welcome("raw", [{"name": "f", "inputs": ["text"], "outputs": ["text"]}])
    url = raw_server(handler, welcome=welcome)
    status, result = loadtest(url, "--users", "1", "--duration", "1", "--check",
                              tmp_path=tmp_path)  # fmt: skip
    assert status == 0, result["check"]["examples"]
    # One session, paused 0.2 s after each rate_limited: a handful of submits, not thousands.
    assert result["errors"]["rate_limited"] <= 10
    assert result["submits_ok"] >= 1


def test_a_bad_arguments_answer_is_a_violation(raw_server, tmp_path):
    async def handler(submit, send, history):
        await send(encode_error(submit.id, "bad_arguments", "no"))

    examples = _check_fails(
        raw_server, tmp_path, handler, {"name": "f", "inputs": ["number"], "outputs": ["text"]}
    )
    assert "bad_arguments" in examples[0]


def test_a_result_of_the_wrong_shape_is_a_violation(raw_server, tmp_path):
    async def handler(submit, send, history):
        await send(encode_result(submit.id, ["not a number"]))

    examples = _check_fails(
        raw_server, tmp_path, handler, {"name": "f", "inputs": [], "outputs": ["number"]}
    )
    assert "not a number" in examples[0]


def test_the_summary_says_where_the_files_went(serve_app, tmp_path, capsys):
    srv = serve_app(make_app())
    out = tmp_path / "out.json"
    status = main([srv.url, "--quiet", "--users", "2", "--duration", "0.5", "--json", str(out)])
    assert status == 0
    assert f"results written to {out.resolve()}" in capsys.readouterr().out
    assert out.exists()


def test_welcome_helper_reads_functions(serve_app):
    from tether.loadtest.welcome import fetch_welcome

    srv = serve_app(make_app())
    welcome = asyncio.run(fetch_welcome(srv.ws_url))
    assert [f["name"] for f in welcome.functions][:3] == ["shout", "total", "wrap"]


def test_a_server_s_rate_limit_is_respected_not_flooded(serve_app, tmp_path):
    """A server allowing 50 messages/s a session, closing after 20 rejected: the auto
    scenario pauses for each retry_after, so no session is closed for flooding."""
    srv = serve_app(make_app(), submit_rate=50.0, submit_burst=10, flood_limit=20)
    status, result = loadtest(
        srv.url, "--users", "2", "--duration", "1.5", "--turns", "200", "--mix", "tick=1",
        "--check",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert status == 0, result["check"]["examples"]
    errors = result["errors"]
    assert set(errors) <= {"rate_limited"}
    assert "lost" not in errors  # no session closed under it (1008)
    assert result["connects"] == 2  # 200 turns each: the sessions lived to the end
    # 2 sessions x (10 burst + 50/s x 1.5 s) results at most, and a few rejections.
    assert result["submits_ok"] <= 2 * (10 + 50 * 2)
    assert errors.get("rate_limited", 0) <= result["submits_ok"]


def test_the_auto_scenario_over_two_generator_processes(serve_app, tmp_path):
    srv = serve_app(make_app())
    status, result = loadtest(
        srv.url, "--users", "4", "--duration", "1.5", "--procs", "2", "--rate", "200",
        "--mix", "chat=1,stream=1,total=1", "--check",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert status == 0, result["check"]["examples"]
    assert set(result["calls"]) == {"chat", "stream", "total"}
    assert result["check"]["results_checked"] == result["submits_ok"] > 0


def test_functions_whose_inputs_cannot_be_generated_are_left_out(raw_server, tmp_path, capsys):
    async def handler(submit, send, history):
        assert submit.fn == "f"
        await send(encode_result(submit.id, [1]))

    functions = [
        {"name": "f", "inputs": [], "outputs": ["number"]},
        {"name": "g", "inputs": ["image"], "outputs": ["number"]},
    ]
    url = raw_server(handler, welcome=encode_welcome("raw", functions))
    status, result = loadtest(url, "--users", "1", "--duration", "0.5", "--check",
                              tmp_path=tmp_path)  # fmt: skip
    assert status == 0 and set(result["calls"]) == {"f"}
    capsys.readouterr()
    # Asked for by --mix, it is an error instead.
    assert main([url, "--quiet", "--duration", "0.5", "--mix", "g=1"]) == 1
    assert "'image' input" in _one_line(capsys)
