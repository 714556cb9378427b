"""The demo app: the guide's two examples, a chatbot (session state) and a score tracker
(global state).

Serve it with ``tether demo``.
"""

from __future__ import annotations

import uuid

from .app import App

__all__ = ["app", "create_app"]

LEADERBOARD = "scores"
LEADERBOARD_KEEP = 1000

History = list[list[str]]


def reply_to(message: str) -> str:
    """A small rule-based bot: enough to show that each session has its own history."""
    text = message.strip()
    lowered = text.lower()
    if not text:
        return "Say something and I will answer."
    if any(lowered.startswith(word) for word in ("hi", "hello", "hey")):
        return "Hello! I remember everything you say in this session."
    if lowered.endswith("?"):
        return f"Good question. What do you think about {text[:-1].strip()!r}?"
    return f"You said: {text}"


def _plain(score: float) -> int | float:
    return int(score) if float(score).is_integer() else score


def create_app() -> App:
    """A fresh demo app with its own (empty) store."""
    app = App("tether demo")

    @app.function(inputs=["text", "state"], outputs=["chatbot", "state"])
    def chat(message: str, history: History = []) -> tuple[History, History]:  # noqa: B006
        """Chat with a bot that remembers this session's conversation."""
        # The mutable default is safe: tether copies it per session, and rolls the
        # session's state back if this function raises after mutating it.
        history.append([message, reply_to(message)])
        return history, history

    @app.function(inputs="number", outputs="json")
    def track_score(score: float) -> list[int | float]:
        """Add a score to the shared leaderboard; returns the top 3 scores of all users."""
        app.store.sync.lb_add(LEADERBOARD, uuid.uuid4().hex, score, keep=LEADERBOARD_KEEP)
        return [_plain(s) for _, s in app.store.sync.lb_top(LEADERBOARD, 3)]

    return app


app = create_app()
