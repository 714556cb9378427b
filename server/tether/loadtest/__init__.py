"""Load testing a tether server: many scripted sessions, latency percentiles, throughput.

::

    tether loadtest ws://127.0.0.1:8000/ws --users 200 --duration 30 --check

N simulated users start over ``--ramp`` seconds. Each runs a *scenario* in a
closed loop (send, wait for the reply, send the next) or, with ``--rate``, in an
open loop where submits leave on a fixed schedule whatever the replies do, and
latency counts from the scheduled time (so a stalled server shows up as
latency, not as a politely slower generator).

Scenarios are pluggable. The default, ``auto`` (``AutoScenario``), drives any
app: before any user starts, the server's welcome is read, and each
conversation calls the functions it lists (weighted by ``--mix fn=weight,...``)
with inputs generated for their components; ``--check`` judges every answer's
shape and error code, and keeps to the server's rate limit (see
``scenarios/auto.py``). Every built-in scenario is first bound to the
server's functions (``Scenario.bind``): one that needs a function the server
lacks (``Scenario.uses``) does not start, and the first ``unknown_fn`` answer
stops a run (``Stats.fatal``, one line). The other built-ins drive the demo
(``tether demo``): ``chat`` (conversations of ``--turns`` messages with the chatbot), ``score``
(scores for the shared leaderboard) and ``rooms`` (users spread over
``--rooms`` chat rooms, default one per 10 users: each conversation joins,
says ``--turns`` messages and leaves; ``--check`` verifies that each message
reaches every member that was in its room meanwhile, once and in order, and
that presence is right: see ``RoomsScenario``; the summary counts the topic
events received and times them from the say's submit). A built-in scenario is
a ``Scenario`` subclass in ``SCENARIOS`` that yields ``Step`` s (function,
inputs, and how to check the reply); each conversation runs on a fresh
connection. Built-ins run on the client stack ``--client`` names: ``picows``
(``PicowsConnection``, ``pip install 'tether[fast]'``; the default when it is
installed) or ``aiohttp`` (``LeanConnection``); both cost less CPU per submit
than ``tether.Client`` (measured by ``bench/clients.py``), picows the least, so
one generator core drives more load (``bench/generator.py`` compares it with a
picows client written to be as fast as possible). On picows a closed loop runs
from the replies' callbacks (``ClosedLoop``), with no task wake-up per submit.
The report names the stack that ran (``client``). A custom
scenario is a Python file defining ``async def user(client, index)``; it gets
the regular ``tether.Client`` API (with submits timed and counted). ``user``
is called again and again on one session until the time is up (a new session
per call if the file sets ``RECONNECT = True``); with ``--rate``, calls start
on the open-loop schedule. ``--check`` on a custom scenario checks that every
submit got its reply; the content is the scenario's to check (an exception
counts as a violation).

Latencies are kept in ``Histogram`` s, log-bucketed like HdrHistogram: memory
is bounded whatever the run length, and histograms from several generator
processes (``--procs``) merge exactly.

The modules, each importing only those above it:

- ``histogram``: ``Histogram``;
- ``scenario``: the scenario API (``Step``, ``Wait``, ``Options``, ``Scenario``);
- ``scenarios``: the built-ins, ``auto``, ``chat``, ``score``, ``rooms`` (and ``rooms_model``);
- ``config``, ``stats``: what a run is asked to do, and what it measures;
- ``replies``: ``Connection``, what the client stacks share (ids, replies, violations);
- ``connection``, ``picows_connection``: ``LeanConnection`` (aiohttp), ``PicowsConnection``;
- ``stacks``: ``--client``: which stack runs, and opening its connections;
- ``closed_loop``: ``ClosedLoop``, a conversation driven from its replies' callbacks;
- ``custom``: custom scenario files, and the ``MeasuredClient`` they drive;
- ``driver``: ``LoadTest``, the users of one generator process;
- ``progress``, ``report``, ``plot``: the progress line, the summary, the PNG;
- ``processes``: ``execute``, in this process or in ``--procs``;
- ``welcome``: ``read_welcome``, the server's functions before a run;
- ``cli``: ``tether loadtest``.

``tether.cli`` imports none of this until ``tether loadtest`` runs.
"""

from __future__ import annotations

from .cli import add_parser, main, run_cli
from .config import Config
from .connection import LeanConnection
from .custom import MeasuredClient
from .driver import LoadTest
from .histogram import SUB_BUCKET_BITS, Histogram
from .processes import execute
from .report import Result
from .scenario import Options, Scenario, ScenarioError, Step
from .scenarios import SCENARIOS, AutoScenario, ChatScenario, ScoreScenario

__all__ = [
    "SCENARIOS",
    "SUB_BUCKET_BITS",
    "AutoScenario",
    "ChatScenario",
    "Config",
    "Histogram",
    "LeanConnection",
    "LoadTest",
    "MeasuredClient",
    "Options",
    "Result",
    "Scenario",
    "ScenarioError",
    "ScoreScenario",
    "Step",
    "add_parser",
    "execute",
    "main",
    "run_cli",
]
