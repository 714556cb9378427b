"""``tether loadtest``: the command line (``add_parser``, ``run_cli``, ``main``)."""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from pathlib import Path
from typing import Any

import orjson

from ..server.tuning import raise_open_files_limit
from .config import CONNECT_TIMEOUT, DRAIN_TIMEOUT, Config
from .custom import load_scenario_file
from .plot import plot
from .processes import execute
from .scenario import DEFAULT_TURNS, Options, ScenarioError, functions_of
from .scenarios import SCENARIOS
from .scenarios.auto import mix_problem, parse_mix
from .scenarios.rooms import USERS_PER_ROOM
from .stacks import CLIENTS, resolve_client
from .welcome import read_welcome

__all__ = ["add_parser", "main", "run_cli", "websocket_url"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be zero or more, not {text}")
    return value


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``loadtest``, with all its options, to ``commands`` (what ``add_subparsers()``
    returns); ``main`` parses ``tether loadtest ARGS`` with it."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "loadtest",
        help="drive many scripted sessions against a server; report latency and throughput",
        description=(
            "Run N simulated users against a tether server and report throughput, "
            "latency percentiles and errors. By default (--scenario auto) they call the "
            "app's own functions, as the server's welcome lists them, with generated "
            "inputs; a rate_limited answer makes a session wait its retry_after. A "
            "scenario calling a function the server lacks stops at once; a run with a "
            "--check violation, or without one successful submit, exits 1."
        ),
    )
    parser.add_argument("url", help="server address: ws://HOST:PORT/ws or http://HOST:PORT")
    parser.add_argument("--users", type=_positive_int, default=10, help="sessions (default 10)")
    parser.add_argument(
        "--duration", type=_positive_float, default=10.0, help="seconds to run (default 10)"
    )
    parser.add_argument(
        "--scenario",
        default="auto",
        help="auto (the default): the app's own functions, as the server's welcome lists "
        "them, with generated inputs; chat | score | rooms: the demo's (tether demo); "
        "or FILE.py defining `async def user(client, index)`",
    )
    parser.add_argument(
        "--mix",
        metavar="FN=WEIGHT,...",
        default=None,
        help="auto: how often to call each function, e.g. chat=3,track_score=1 "
        "(functions left out are not called; default: all alike)",
    )
    parser.add_argument(
        "--ramp", type=_non_negative_float, default=0.0, help="seconds to start all users over"
    )
    parser.add_argument(
        "--rate",
        type=_positive_float,
        default=None,
        help="open loop: submits per second in total (custom scenarios: calls of user())",
    )
    parser.add_argument(
        "--procs", type=_positive_int, default=1, help="generator processes (default 1)"
    )
    parser.add_argument(
        "--turns",
        type=_positive_int,
        default=DEFAULT_TURNS,
        help=f"auto, chat, rooms: submits per conversation (a session) before reconnecting "
        f"(default {DEFAULT_TURNS})",
    )
    parser.add_argument(
        "--rooms",
        type=_positive_int,
        default=None,
        help=f"rooms: chat rooms the users are spread over "
        f"(default one per {USERS_PER_ROOM} users)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="verify every reply: ids match (each answer reaches its own session); auto: "
        "every answer is a result of the declared outputs or an error the protocol documents "
        "for a valid submit; chat: histories hold exactly what each session sent; "
        "rooms: every message reaches every member, once and in order, presence is right; "
        "exit non-zero on any violation",
    )
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON to OUT")
    parser.add_argument(
        "--plot", metavar="OUT.png", help="plot throughput and latency (needs matplotlib)"
    )
    parser.add_argument(
        "--drain-timeout",
        type=_non_negative_float,
        default=DRAIN_TIMEOUT,
        help=f"seconds in-flight submits may take after the end; rooms --check: also how "
        f"long a user waits for its own messages to come back as events "
        f"(default {DRAIN_TIMEOUT:g})",
    )
    parser.add_argument(
        "--client",
        choices=CLIENTS,
        default="auto",
        help="the client stack of the built-in scenarios: picows (pip install 'tether[fast]'), "
        "aiohttp, or auto: picows when installed, else aiohttp (default auto)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    return parser


def websocket_url(url: str) -> str:
    """Accept ``http(s)://host:port`` as well as the WebSocket address itself."""
    for http, ws in (("http://", "ws://"), ("https://", "wss://")):
        if url.startswith(http):
            url = ws + url[len(http) :]
    _, sep, rest = url.partition("://")
    if sep and "/" not in rest:
        url += "/ws"
    elif sep and rest.endswith("/") and rest.count("/") == 1:
        url += "ws"
    return url


def run_cli(args: argparse.Namespace) -> int:
    """``tether loadtest``: run, print the summary, write --json/--plot; the exit status."""
    if args.plot:
        try:
            importlib.import_module("matplotlib")
        except ImportError:
            print(
                "tether loadtest: --plot needs matplotlib, which is not installed "
                "(pip install matplotlib), or leave out --plot",
                file=sys.stderr,
            )
            return 2
    if args.scenario not in SCENARIOS:
        try:
            load_scenario_file(args.scenario)
        except ScenarioError as exc:
            print(f"tether loadtest: {exc}", file=sys.stderr)
            return 2
    try:
        resolve_client(args.client)
    except ValueError as exc:
        print(f"tether loadtest: {exc}", file=sys.stderr)
        return 2
    url = websocket_url(args.url)
    if not url.startswith(("ws://", "wss://")):
        print(f"tether loadtest: {args.url!r} is not a ws:// or http:// address", file=sys.stderr)
        return 2
    mix: tuple[tuple[str, float], ...] = ()
    if args.mix is not None:
        if args.scenario != "auto":
            print("tether loadtest: --mix is for --scenario auto", file=sys.stderr)
            return 2
        try:
            mix = parse_mix(args.mix)
        except ValueError as exc:
            print(f"tether loadtest: {exc}", file=sys.stderr)
            return 2
    functions: tuple[dict[str, Any], ...] = ()
    if args.scenario in SCENARIOS:
        welcome = read_welcome(url, CONNECT_TIMEOUT)
        if welcome is not None:
            functions = tuple(welcome.functions)
            problem = mix_problem(mix, functions_of(welcome.functions))
            if problem is not None:
                print(f"tether loadtest: {problem}", file=sys.stderr)
                return 2
            scenario = SCENARIOS[args.scenario](Options(mix=mix))
            problem = scenario.bind(functions_of(welcome.functions))
            if problem is not None:
                print(f"tether loadtest: {problem}", file=sys.stderr)
                return 1
    config = Config(
        url=url,
        users=args.users,
        duration=args.duration,
        scenario=args.scenario,
        ramp=args.ramp,
        rate=args.rate,
        procs=min(args.procs, args.users),
        check=args.check,
        turns=args.turns,
        rooms=args.rooms,
        drain_timeout=args.drain_timeout,
        progress=not args.quiet,
        client=args.client,
        mix=mix,
        functions=functions,
    )
    raise_open_files_limit()
    result = execute(config)
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2))
    if result.stats.fatal is not None:
        # One line: what stopped the run (no table of a run that did not happen).
        print(f"tether loadtest: {result.stats.fatal}", file=sys.stderr)
        return 1
    print(result.table())
    if args.json:
        print(f"results written to {Path(args.json).resolve()}")
    if args.plot:
        plot(result, args.plot)
        print(f"plot written to {Path(args.plot).resolve()}")
    return 1 if result.failed else 0


def main(argv: list[str] | None = None) -> int:
    """``tether loadtest ARGS`` (and ``python -m tether.loadtest ARGS``), given ARGS;
    the exit status."""
    parser = argparse.ArgumentParser(prog="tether")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run_cli(parser.parse_args(["loadtest", *(argv if argv is not None else sys.argv[1:])]))
