"""The built-in scenarios, by ``--scenario`` name: ``auto`` drives any app's own functions,
the others the demo (``tether demo``).

- ``auto`` (the default): the functions the server's welcome lists, by ``--mix``;
- ``chat``: conversations of ``--turns`` messages with the chatbot;
- ``score``: scores for the shared leaderboard;
- ``rooms``: users spread over ``--rooms`` chat rooms, checking that every
  message reaches every member, once and in order.
"""

from __future__ import annotations

from ..scenario import Scenario
from .auto import AutoScenario
from .chat import ChatScenario
from .rooms import RoomsScenario, default_rooms
from .score import ScoreScenario

__all__ = [
    "SCENARIOS",
    "AutoScenario",
    "ChatScenario",
    "RoomsScenario",
    "ScoreScenario",
    "default_rooms",
]

SCENARIOS: dict[str, type[Scenario]] = {
    "auto": AutoScenario,
    "chat": ChatScenario,
    "score": ScoreScenario,
    "rooms": RoomsScenario,
}
