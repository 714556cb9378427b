"""`tether loadtest` against real servers: what it measures, and what --check catches."""

from __future__ import annotations

import asyncio
import itertools
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvloop
from aiohttp import WSMsgType, web

from tests.conftest import free_port
from tether import PROTOCOL_VERSION, App, State, context
from tether.demo import create_app
from tether.loadtest import SUB_BUCKET_BITS, Histogram, main

# -- histograms ---------------------------------------------------------------


def test_histogram_percentiles_are_within_one_percent_of_the_exact_ones():
    rng = random.Random(7)
    values = [int(rng.lognormvariate(8, 1.5)) for _ in range(20_000)]
    h = Histogram()
    for v in values:
        h.record(v)
    values.sort()
    for q in (50, 90, 99, 99.9):
        exact = values[max(0, int(len(values) * q / 100 + 0.999999) - 1)]
        assert abs(h.percentile(q) - exact) <= exact / (1 << SUB_BUCKET_BITS) + 1
    assert h.percentile(100) == values[-1] == h.max
    assert h.min == values[0]


def test_merging_histograms_equals_recording_everything_in_one():
    rng = random.Random(3)
    parts = [[rng.randrange(1, 10**7) for _ in range(2000)] for _ in range(3)]
    whole, merged = Histogram(), Histogram()
    for part in parts:
        h = Histogram()
        for v in part:
            h.record(v)
            whole.record(v)
        merged.merge(Histogram.from_dict(orjson.loads(orjson.dumps(h.to_dict()))))
    assert merged.counts == whole.counts
    assert (merged.count, merged.total, merged.min, merged.max) == (
        whole.count,
        whole.total,
        whole.min,
        whole.max,
    )


def test_a_histogram_of_a_million_wide_ranging_values_stays_small():
    rng = random.Random(1)
    h = Histogram()
    for _ in range(1_000_000):
        h.record(rng.randrange(0, 1 << 40))
    assert len(h.counts) < 40 << SUB_BUCKET_BITS


def test_every_value_lies_inside_the_range_of_its_bucket():
    for v in [*range(0, 2000), *(random.Random(5).randrange(1 << 45) for _ in range(5000))]:
        low, high = Histogram.bucket_range(Histogram.bucket(v))
        assert low <= v <= high


# -- running it -----------------------------------------------------------------


def loadtest(url: str, *args: str, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "result.json"
    status = main([url, "--quiet", "--json", str(out), *args])
    return status, orjson.loads(out.read_bytes())


def test_the_chat_scenario_passes_its_check_against_the_demo(serve_app, tmp_path):
    srv = serve_app(create_app())
    status, result = loadtest(
        srv.url, "--users", "5", "--duration", "1", "--turns", "3", "--check", tmp_path=tmp_path
    )
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


def test_a_custom_scenario_file_drives_the_regular_client_api(serve_app, tmp_path):
    scenario = tmp_path / "scenario.py"
    scenario.write_text(
        "async def user(client, index):\n"
        "    history = await client.submit('chat', f'user {index}')\n"
        "    assert history[-1][0] == f'user {index}'\n"
        "    await client.submit('no_such_function')\n"
    )
    srv = serve_app(create_app())
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


def test_the_command_line_runs_a_loadtest_and_prints_a_summary(serve_app, tmp_path):
    srv = serve_app(create_app())
    proc = subprocess.run(
        [sys.executable, "-m", "tether", "loadtest", srv.url, "--users", "2", "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "submits/s" in proc.stderr  # the progress line
    assert "p99 ms" in proc.stdout
    assert "errors: none" in proc.stdout


def test_an_unknown_scenario_is_refused_with_a_clear_message(capsys):
    assert main(["ws://127.0.0.1:9/ws", "--scenario", "nope"]) == 2
    assert "use one of chat, score, rooms" in capsys.readouterr().err


def test_plot_without_matplotlib_is_refused_before_the_run(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["ws://127.0.0.1:9/ws", "--plot", str(tmp_path / "x.png")]) == 2
    assert "--plot needs matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_plot_draws_throughput_and_latency_when_matplotlib_is_there(serve_app, tmp_path):
    pytest.importorskip("matplotlib")
    srv = serve_app(create_app())
    png = tmp_path / "run.png"
    status, _ = loadtest(
        srv.url, "--users", "2", "--duration", "2.5", "--plot", str(png), tmp_path=tmp_path
    )
    assert status == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_server_that_refuses_connections_gives_a_failing_status(tmp_path):
    status, result = loadtest(
        f"ws://127.0.0.1:{free_port()}/ws", "--users", "2", "--duration", "0.5", tmp_path=tmp_path
    )
    assert status == 1
    assert result["errors"]["connect_failed"] >= 2
    assert result["submits_ok"] == 0


# -- what --check catches ----------------------------------------------------------


def leaky_chat_app() -> App:
    """A broken chat: every session is answered with one history shared by all."""
    app = App("leaky")
    shared: list[list[str]] = []

    @app.function(inputs="text", outputs="chatbot")
    def chat(message: str) -> list[list[str]]:
        shared.append([message, "ok"])
        return list(shared)

    return app


def test_check_fails_when_sessions_see_each_others_history(serve_app, tmp_path):
    srv = serve_app(leaky_chat_app())
    args = ("--users", "3", "--duration", "1", "--turns", "3")
    status, result = loadtest(srv.url, *args, "--check", tmp_path=tmp_path)
    assert status == 1
    assert result["check"]["violations"] > 0
    assert "messages not from this session" in " ".join(result["check"]["examples"])
    # The same run without --check has nothing to complain about: the check is what fails.
    status, result = loadtest(srv.url, *args, tmp_path=tmp_path)
    assert status == 0


Handler = Callable[[dict[str, Any], web.WebSocketResponse, list[Any]], Awaitable[None]]


def chat_reply(msg: dict[str, Any], history: list[list[str]], id: Any = None) -> str:
    """What a correct chat answers (``history`` is the connection's own)."""
    history.append([msg["data"][0], "ok"])
    reply = {"type": "result", "id": msg["id"] if id is None else id, "data": [history]}
    return orjson.dumps(reply).decode()


@pytest.fixture
def raw_server() -> Iterator[Callable[[Handler], str]]:
    """``raw_server(handler)`` serves protocol v1 by hand, to misbehave on purpose."""
    stops: list[Callable[[], None]] = []

    def start(handler: Handler) -> str:
        ready = threading.Event()
        box: dict[str, Any] = {}

        async def ws_handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            welcome = {
                "type": "welcome",
                "protocol": PROTOCOL_VERSION,
                "session": "raw",
                "functions": [],
            }
            await ws.send_str(orjson.dumps(welcome).decode())
            history: list[list[str]] = []
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await handler(orjson.loads(msg.data), ws, history)
            return ws

        async def main() -> None:
            app = web.Application()
            app.router.add_get("/ws", ws_handler)
            runner = web.AppRunner(app, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            box["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            box["stop"] = stop = asyncio.Event()
            box["loop"] = asyncio.get_running_loop()
            ready.set()
            await stop.wait()
            await runner.cleanup()

        def run() -> None:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(main())

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert ready.wait(10)

        def stop() -> None:
            box["loop"].call_soon_threadsafe(box["stop"].set)
            thread.join(10)

        stops.append(stop)
        return f"ws://127.0.0.1:{box['port']}/ws"

    yield start
    for stop in stops:
        stop()


async def test_check_reports_replies_sent_twice(raw_server, tmp_path):
    async def twice(msg: dict[str, Any], ws: web.WebSocketResponse, history: list[Any]) -> None:
        reply = chat_reply(msg, history)
        await ws.send_str(reply)
        await ws.send_str(reply)

    url = raw_server(twice)
    status, result = await asyncio.to_thread(
        loadtest, url, "--users", "2", "--duration", "0.5", "--check", tmp_path=tmp_path
    )
    assert status == 1
    assert "a second reply to submit" in " ".join(result["check"]["examples"])


async def test_check_reports_replies_to_ids_never_sent(raw_server, tmp_path):
    async def wrong_id(msg: dict[str, Any], ws: web.WebSocketResponse, history: list[Any]) -> None:
        await ws.send_str(chat_reply(msg, history, id=msg["id"] + 1000))

    url = raw_server(wrong_id)
    status, result = await asyncio.to_thread(
        loadtest, url, "--users", "2", "--duration", "0.5", "--check", "--drain-timeout", "0.5",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert status == 1
    examples = " ".join(result["check"]["examples"])
    assert "which was never sent" in examples
    assert "got no reply" in examples


async def test_check_reports_submits_that_never_get_a_reply(raw_server, tmp_path):
    async def drops_the_third(
        msg: dict[str, Any], ws: web.WebSocketResponse, history: list[Any]
    ) -> None:
        reply = chat_reply(msg, history)
        if len(history) != 3:
            await ws.send_str(reply)

    url = raw_server(drops_the_third)
    status, result = await asyncio.to_thread(
        loadtest, url, "--users", "2", "--duration", "0.5", "--check", "--drain-timeout", "0.5",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert status == 1
    assert result["errors"]["lost"] == 2
    assert result["check"]["violations"] == 2


def faulty_rooms_app(fault: str) -> App:
    """The demo's chat rooms (same functions, replies and events), with one bug.

    - ``duplicate``: every message is published twice;
    - ``drop``: every third message is never published;
    - ``alone``: join_room lists only the joiner as the room's members;
    - ``late``: join_room publishes presence before subscribing the joiner to the room.
    """
    app = App("faulty rooms", topics=["room:*"])
    membership = State(default=None, name="membership")
    said = itertools.count()

    def presence(members: dict[str, str]) -> dict[str, Any]:
        return {"kind": "presence", "members": sorted(set(members.values()))}

    async def set_presence(room: str, change: Callable[[dict[str, str]], dict[str, str]]) -> Any:
        return await app.store.update(
            f"presence:{room}",
            lambda members: change(members or {}),
            {},
            topic=f"room:{room}",
            event=presence,
        )

    @app.function(inputs=["text", "text", membership], outputs=["json", membership])
    async def join_room(name: str, room: str, where: Any = None) -> tuple[Any, Any]:
        ctx = context()
        if fault != "late":
            ctx.subscribe(f"room:{room}")
        members = await set_presence(room, lambda m: {**m, ctx.session_id: name})
        if fault == "late":
            ctx.subscribe(f"room:{room}")
        names = [name] if fault == "alone" else presence(members)["members"]
        info = {"room": room, "name": name, "history": [], "members": names}
        return info, {"room": room, "name": name}

    @app.function(inputs=["text", membership], outputs=["json", membership])
    async def say(text: str, where: Any = None) -> tuple[Any, Any]:
        message = {
            "kind": "message",
            "id": uuid.uuid4().hex,
            "name": where["name"],
            "text": text,
            "at": time.time(),
        }
        copies = {"duplicate": 2, "drop": 0 if next(said) % 3 == 2 else 1}.get(fault, 1)
        for _ in range(copies):
            app.publish(f"room:{where['room']}", message)
        return message, where

    @app.function(inputs=[membership], outputs=["json", membership])
    async def leave_room(where: Any = None) -> tuple[Any, Any]:
        if where is None:
            return {"left": None}, None
        ctx = context()
        await set_presence(
            where["room"], lambda m: {k: v for k, v in m.items() if k != ctx.session_id}
        )
        ctx.unsubscribe(f"room:{where['room']}")
        return {"left": where["room"]}, None

    return app


@pytest.mark.parametrize(
    ("fault", "rooms", "complaint"),
    [
        ("duplicate", "1", "arrived twice"),
        ("drop", "1", "never came back as events"),
        ("alone", "1", "members without"),
        ("late", "3", "never saw itself in a presence event"),
    ],
)
def test_check_catches_a_rooms_server_that_breaks_its_guarantees(
    serve_app, tmp_path, fault, rooms, complaint
):
    srv = serve_app(faulty_rooms_app(fault))
    args = ("--scenario", "rooms", "--users", "3", "--rooms", rooms, "--duration", "1",
            "--turns", "3", "--drain-timeout", "0.5")  # fmt: skip
    status, result = loadtest(srv.url, *args, "--check", tmp_path=tmp_path)
    assert status == 1
    assert result["check"]["violations"] > 0
    examples = " ".join(result["check"]["examples"])
    assert complaint in examples, examples
    assert result["errors"] == {}  # every submit was answered: only the check fails
    # The same run without --check has nothing to complain about: the check is what fails.
    status, result = loadtest(srv.url, *args, tmp_path=tmp_path)
    assert status == 0
    assert result["check"]["violations"] == 0


def test_a_faithful_copy_of_the_rooms_app_passes_the_check(serve_app, tmp_path):
    # The faulty app without a fault: what the fault tests catch is the fault alone.
    srv = serve_app(faulty_rooms_app("none"))
    status, result = loadtest(
        srv.url, "--scenario", "rooms", "--users", "3", "--rooms", "1", "--duration", "1",
        "--turns", "3", "--check",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert status == 0, result["check"]["examples"]
