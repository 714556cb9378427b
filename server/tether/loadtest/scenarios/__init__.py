"""The built-in scenarios, which drive the demo (``tether demo``), by ``--scenario`` name.

- ``chat``: conversations of ``--turns`` messages with the chatbot;
- ``score``: scores for the shared leaderboard;
- ``rooms``: users spread over ``--rooms`` chat rooms, checking that every
  message reaches every member, once and in order.
"""

from __future__ import annotations

from ..scenario import Scenario
from .chat import ChatScenario
from .rooms import RoomsScenario, default_rooms
from .score import ScoreScenario

__all__ = ["SCENARIOS", "ChatScenario", "RoomsScenario", "ScoreScenario", "default_rooms"]

SCENARIOS: dict[str, type[Scenario]] = {
    "chat": ChatScenario,
    "score": ScoreScenario,
    "rooms": RoomsScenario,
}
