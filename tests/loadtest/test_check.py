"""What ``--check`` catches: servers that break what the protocol or the demo guarantee."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.loadtest.conftest import Send, loadtest
from tether import App, State, context
from tether.protocol import Submit, encode_result


def leaky_chat_app() -> App:
    """A broken chat: every session is answered with one history shared by all."""
    app = App("leaky")
    shared: list[list[str]] = []

    @app.function(inputs="text", outputs="chatbot")
    def chat(message: str) -> list[list[str]]:
        shared.append([message, "ok"])
        return list(shared)

    return app


@pytest.mark.parametrize(
    ("scenario", "complaint"),
    [("chat", "messages not from this session"), ("auto", "sent by another session")],
)
def test_check_fails_when_sessions_see_each_others_history(
    serve_app, tmp_path, scenario, complaint
):
    srv = serve_app(leaky_chat_app())
    args = ("--scenario", scenario, "--users", "3", "--duration", "1", "--turns", "3")
    status, result = loadtest(srv.url, *args, "--check", tmp_path=tmp_path)
    assert status == 1
    assert result["check"]["violations"] > 0
    assert complaint in " ".join(result["check"]["examples"])
    # The same run without --check has nothing to complain about: the check is what fails.
    status, result = loadtest(srv.url, *args, tmp_path=tmp_path)
    assert status == 0


def chat_reply(submit: Submit, history: list[Any], id: Any = None) -> bytes:
    """What a correct chat answers (``history`` is the connection's own)."""
    history.append([submit.data[0], "ok"])
    return encode_result(submit.id if id is None else id, [history])


async def test_check_reports_replies_sent_twice(raw_server, tmp_path):
    async def twice(submit: Submit, send: Send, history: list[Any]) -> None:
        reply = chat_reply(submit, history)
        await send(reply)
        await send(reply)

    url = raw_server(twice)
    status, result = await asyncio.to_thread(
        loadtest, url, "--users", "2", "--duration", "0.5", "--check", tmp_path=tmp_path
    )
    assert status == 1
    assert "a second reply to submit" in " ".join(result["check"]["examples"])


async def test_check_reports_replies_to_ids_never_sent(raw_server, tmp_path):
    async def wrong_id(submit: Submit, send: Send, history: list[Any]) -> None:
        assert isinstance(submit.id, int)
        await send(chat_reply(submit, history, id=submit.id + 1000))

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
    async def drops_the_third(submit: Submit, send: Send, history: list[Any]) -> None:
        reply = chat_reply(submit, history)
        if len(history) != 3:
            await send(reply)

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
    - ``late``: join_room publishes presence before subscribing the joiner to the room,
      as a plain event (not the topic's current value, which a late subscriber would get).
    """
    app = App("faulty rooms", topics=["room:*"])
    membership = State(default=None, name="membership")
    said = itertools.count()

    def presence(members: dict[str, str]) -> dict[str, Any]:
        return {"kind": "presence", "members": sorted(set(members.values()))}

    async def set_presence(room: str, change: Callable[[dict[str, str]], dict[str, str]]) -> Any:
        if fault == "late":
            members = await app.store.update(
                f"presence:{room}", lambda members: change(members or {}), {}
            )
            app.publish(f"room:{room}", presence(members))
            return members
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
