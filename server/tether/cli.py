"""The ``tether`` command: ``serve``, ``demo``, ``loadtest``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from .app import App
from .errors import AppError
from .settings import Settings, SettingsError, parse_value

__all__ = ["load_app", "main"]


def load_app(spec: str) -> App:
    """Import ``module:attribute`` (default attribute ``app``) and check it is an App.

    Every mistake is one line (``SystemExit``): a file name for a module name, an
    import error, a missing attribute (with the Apps the module has), or a mistake in a
    function's declaration (``myapp.py:12: chat: unknown component ...``).
    """
    module_name, _, attr = spec.partition(":")
    attr = attr or "app"
    if module_name.endswith(".py"):
        dotted = module_name[:-3].replace(os.sep, ".").replace("/", ".").strip(".")
        raise SystemExit(
            f"tether: {module_name!r} is a file name; give the module name instead, "
            f"without '.py': tether serve {dotted}:{attr}"
        )
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except AppError as exc:
        raise SystemExit(str(exc)) from None
    except ImportError as exc:
        raise SystemExit(f"tether: cannot import {module_name!r}: {exc}") from None
    if not hasattr(module, attr):
        apps = sorted(name for name, value in vars(module).items() if isinstance(value, App))
        has = (
            f"; its tether.App: {', '.join(apps)} (tether serve {module_name}:{apps[0]})"
            if apps
            else "; it has no tether.App"
        )
        raise SystemExit(f"tether: module {module_name!r} has no attribute {attr!r}{has}")
    app = getattr(module, attr)
    if not isinstance(app, App):
        raise SystemExit(
            f"tether: {module_name}:{attr} is of type {type(app).__name__}, not a tether.App"
        )
    return app


def _add_settings(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("limits and timeouts (also TETHER_<NAME> variables)")
    for f in dataclasses.fields(Settings):
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            default=None,
            metavar=type(f.default).__name__.upper(),
            help=f"{f.metadata['doc']} (default: {f.default})",
        )


def _settings(args: argparse.Namespace) -> Settings:
    given: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        raw = getattr(args, f.name)
        if raw is not None:
            given[f.name] = parse_value(f, raw)
    return Settings.from_env(**given)


def _server_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    parser.add_argument("--log-level", default="info", help="logging level (default info)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the port (SO_REUSEPORT); needs --store redis://... when > 1",
    )
    _add_settings(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tether", description="Serve stateful Python functions over one WebSocket."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve an app: tether serve module:app")
    serve.add_argument("app", help="the app to serve, as module:attribute")
    _server_args(serve)
    demo = commands.add_parser("demo", help="serve the demo app (chat and score tracker)")
    _server_args(demo)
    # The load tester's own parser is in tether.loadtest.cli, imported only when it runs
    # (it costs serve and demo a quarter of a second otherwise). Here the command takes
    # every word after it as is: no argument starts with NUL, so none, not even --help,
    # is an option of this parser.
    loadtest = commands.add_parser(
        "loadtest",
        help="drive many scripted sessions against a server; report latency and throughput",
        add_help=False,
        prefix_chars="\0",
    )
    loadtest.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def run(app: App, host: str, port: int, settings: Settings, reuse_port: bool = False) -> None:
    from .server import serve
    from .server.tuning import loop_factory

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(serve(app, host, port, settings, announce=True, reuse_port=reuse_port))


def _worker(command: str, spec: str, host: str, port: int, settings: Settings) -> None:
    """One of ``--workers N`` processes: import the app itself, serve on the shared port."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into SIGTERM
    if command == "serve":
        app = load_app(spec)
    else:
        from .demo import app
    run(app, host, port, settings, reuse_port=True)


def run_workers(
    command: str, spec: str, host: str, port: int, settings: Settings, workers: int
) -> int:
    """Start ``workers`` processes on one port and stop them all on SIGINT/SIGTERM."""
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(command, spec, host, port, settings), daemon=False)
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while any(proc.is_alive() for proc in procs):
        for proc in procs:
            proc.join(timeout=0.5)
            if not stopping and proc.exitcode not in (None, 0):
                print(f"tether: worker {proc.pid} exited with {proc.exitcode}", file=sys.stderr)
                stop(signal.SIGTERM, None)
    return 0 if all(proc.exitcode == 0 for proc in procs) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "loadtest":
        from .loadtest.cli import main as loadtest

        return loadtest(args.args)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = _settings(args)
    except SettingsError as exc:
        parser.error(str(exc))
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.workers > 1:
        if settings.store == "memory://":
            parser.error(
                "--workers > 1 needs a shared store: each process would have its own "
                "memory store, so global state and topics would split. "
                "Use --store redis://host:port/db"
            )
        spec = args.app if args.command == "serve" else ""
        if args.command == "serve":
            load_app(spec)  # fail here, once, if it cannot be imported
        return run_workers(args.command, spec, args.host, args.port, settings, args.workers)
    if args.command == "serve":
        app = load_app(args.app)
    else:
        from .demo import app
    try:
        run(app, args.host, args.port, settings)
    except OSError as exc:
        print(f"tether: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
