"""The HTTP side: endpoints (health, readiness, metrics, the page) and the checks a
WebSocket handshake passes before the upgrade (origin, caps, authentication).

protocol.md ("Handshake refusals", "HTTP endpoints") is the contract.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..core.admission import origin_allowed
from ..core.metrics import available as metrics_available
from ..core.metrics import exposition
from ..errors import Refused

if TYPE_CHECKING:
    from .server import Server

__all__ = ["admit", "install", "static_dir"]

log = logging.getLogger("tether.transport")


def static_dir() -> Path:
    """Where the browser client lives: next to the source tree, or inside the wheel."""
    source = Path(__file__).resolve().parents[3] / "client_static"
    if (source / "index.html").is_file():
        return source
    return Path(str(resources.files("tether") / "client_static"))


def install(server: Server, websocket: Any) -> None:
    """Add every route of ``server`` to its aiohttp application."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "sessions": len(server.sessions),
                "parked": len(server.parked),
                "pid": os.getpid(),
            }
        )

    async def readyz(_: web.Request) -> web.Response:
        """Ready to serve: 503 while a shared store or its topic link is down."""
        checks: dict[str, str] = {}
        runtime = server.runtime
        if runtime is not None and runtime.backend.shared:
            checks["store"] = "ok" if await runtime.backend.ping() else "unavailable"
        if server.bridge is not None:
            checks["topics"] = "ok" if server.bridge.healthy else "reconnecting"
        ready = not server.stopping and all(v == "ok" for v in checks.values())
        body = {"status": "ready" if ready else "unavailable", **checks}
        if server.stopping:
            body["status"] = "stopping"
        return web.json_response(body, status=200 if ready else 503)

    async def metrics(_: web.Request) -> web.Response:
        """Prometheus text exposition (501 without prometheus-client)."""
        if not metrics_available():
            return web.Response(
                status=501,
                text="metrics need prometheus-client: pip install 'tether[metrics]'\n",
            )
        body, content_type = exposition(server.metrics, server.gauges)
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def index(_: web.Request) -> web.StreamResponse:
        return web.FileResponse(static_dir() / "index.html")

    router = server.web.router
    router.add_get("/ws", websocket)
    router.add_get("/healthz", healthz)
    router.add_get("/readyz", readyz)
    if server.settings.metrics:
        router.add_get("/metrics", metrics)
    router.add_get("/", index)
    router.add_static("/static/", static_dir(), show_index=False)


async def admit(server: Server, request: web.Request) -> Any:
    """Everything checked before the upgrade; returns the identity or raises an
    HTTP error (403 foreign origin, 401/403 authentication, 503 over a cap)."""
    settings = server.settings
    if server.stopping:
        raise web.HTTPServiceUnavailable(text="server is shutting down")
    if settings.check_origin and "Origin" in request.headers:
        origins = request.headers.getall("Origin")
        # Two Origin headers: which one a proxy or a browser meant is anyone's guess.
        if len(origins) != 1 or not origin_allowed(
            origins[0], request.host, server.allowed_origins
        ):
            log.info("refused a handshake from origin %r", ", ".join(origins)[:200])
            raise web.HTTPForbidden(text="cross-origin WebSocket refused (see allow_origin)")
    refusal = server.counter.refusal(request.remote or "")
    # Parked sessions make room for a live newcomer (the oldest ends).
    if (
        refusal is None
        and len(server.sessions) + len(server.parked) >= settings.max_sessions
        and not server.parked.evict()
    ):
        refusal = f"the server is at its session limit ({settings.max_sessions})"
    if refusal is not None:
        raise web.HTTPServiceUnavailable(text=refusal, headers={"Retry-After": "5"})
    hook = server.app.authenticator
    if hook is None:
        return None
    try:
        async with asyncio.timeout(settings.handshake_timeout):
            if inspect.iscoroutinefunction(hook):
                identity = await hook(request)
            else:
                loop = asyncio.get_running_loop()
                identity = await loop.run_in_executor(server.runner.pool, hook, request)
    except Refused as exc:
        raise _refusal(exc.status, exc.reason) from None
    except TimeoutError:
        raise web.HTTPServiceUnavailable(text="authentication timed out") from None
    except Exception:
        log.exception("the authenticate hook failed")
        raise web.HTTPInternalServerError(text="authentication failed") from None
    if identity is None:
        raise _refusal(401, "authentication required")
    return identity


def _refusal(status: int, reason: str) -> web.HTTPException:
    if status == 403:
        return web.HTTPForbidden(text=reason)
    return web.HTTPUnauthorized(text=reason, headers={"WWW-Authenticate": "Bearer"})
