"""The ``tether`` command: ``serve``, ``demo``, ``loadtest``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

from . import loadtest
from .app import App
from .settings import Settings, SettingsError, parse_value

__all__ = ["load_app", "main"]


def load_app(spec: str) -> App:
    """Import ``module:attribute`` (default attribute ``app``) and check it is an App."""
    module_name, _, attr = spec.partition(":")
    attr = attr or "app"
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"tether: cannot import {module_name!r}: {exc}") from None
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise SystemExit(f"tether: {spec!r} is not a tether.App (got {type(app).__name__})")
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
    loadtest.add_parser(commands)
    return parser


def run(app: App, host: str, port: int, settings: Settings) -> None:
    from .transport import serve

    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(app, host, port, settings, announce=True))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "loadtest":
        return loadtest.run_cli(args)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = _settings(args)
    except SettingsError as exc:
        parser.error(str(exc))
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
