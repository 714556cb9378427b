"""Sessions: one per WebSocket connection, holding its state and ordering its submits.

Submits that touch the same state slot run one at a time, in arrival order:
each slot has a "tail", the completion future of the last submit that
claimed it, and a new submit waits for the tails of all its slots before it
runs. The claim happens synchronously when the frame is read, so arrival
order is the order of execution. Submits that share no slot do not wait for
each other.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import traceback
from collections.abc import Callable
from typing import Any

from .app import App, Function
from .components import BadValue
from .protocol import (
    Code,
    LocalProtocolError,
    Ping,
    RemoteProtocolError,
    Submit,
    SubmitId,
    decode_client,
    encode_error,
    encode_pong,
    encode_result,
)
from .runner import Runner
from .settings import Settings
from .state import State, copy_value

__all__ = ["Session", "new_session_id"]

log = logging.getLogger("tether.session")

Send = Callable[[bytes], None]


def new_session_id() -> str:
    """An unguessable session id (128 bits of randomness)."""
    return secrets.token_urlsafe(16)


class Session:
    """The state and in-flight submits of one connection."""

    def __init__(
        self,
        app: App,
        runner: Runner,
        settings: Settings,
        send: Send,
        id: str | None = None,
        client: str | None = None,
    ) -> None:
        self.id = id or new_session_id()
        self.client = client
        self.app = app
        self.settings = settings
        self._runner = runner
        self._send = send
        self.state: dict[State, Any] = {}
        self._tails: dict[State, asyncio.Future[None]] = {}
        self.tasks: dict[SubmitId, asyncio.Task[None]] = {}
        self.closed = False
        self._ended = False

    # -- state -----------------------------------------------------------

    def get(self, slot: State) -> Any:
        """This session's value of ``slot`` (created from its default on first use)."""
        try:
            return self.state[slot]
        except KeyError:
            value = self.state[slot] = slot.initial()
            return value

    # -- incoming frames ---------------------------------------------------

    def receive(self, payload: str | bytes) -> None:
        """Handle one text frame from the client. Never raises for bad input."""
        try:
            message = decode_client(payload, max_id_length=self.settings.max_id_length)
        except RemoteProtocolError as exc:
            self._send(exc.reply())
            return
        if type(message) is Submit:
            self.submit(message)
        elif type(message) is Ping:
            self._send(encode_pong())

    def submit(self, msg: Submit) -> None:
        """Admit a submit (or refuse it at once) and schedule it."""
        function = self.app.functions.get(msg.fn)
        if function is None:
            self._send(encode_error(msg.id, Code.UNKNOWN_FN, f"no function named {msg.fn[:64]!r}"))
            return
        if msg.id in self.tasks:
            self._send(
                encode_error(msg.id, Code.DUPLICATE_ID, f"submit {msg.id!r} is still in flight")
            )
            return
        if self.closed:
            self._send(encode_error(msg.id, Code.SHUTTING_DOWN, "the session is closing"))
            return
        if len(self.tasks) >= self.settings.max_pending_per_session:
            self._send(
                encode_error(
                    msg.id,
                    Code.TOO_MANY_PENDING,
                    f"this session already has {len(self.tasks)} submits in flight "
                    f"(the limit is {self.settings.max_pending_per_session}); "
                    "wait for some results",
                )
            )
            return
        try:
            args = function.check_arguments(msg.data)
        except BadValue as exc:
            self._send(encode_error(msg.id, Code.BAD_ARGUMENTS, str(exc)))
            return

        waits: list[asyncio.Future[None]] = []
        done: asyncio.Future[None] | None = None
        if function.slots:
            done = asyncio.get_running_loop().create_future()
            for slot in function.slots:
                tail = self._tails.get(slot)
                if tail is not None and tail not in waits:
                    waits.append(tail)
                self._tails[slot] = done
        self.tasks[msg.id] = asyncio.get_running_loop().create_task(
            self._run(msg.id, function, args, waits, done)
        )

    # -- execution -----------------------------------------------------------

    async def _run(
        self,
        id: SubmitId,
        function: Function,
        args: list[Any],
        waits: list[asyncio.Future[None]],
        done: asyncio.Future[None] | None,
    ) -> None:
        try:
            for tail in waits:
                await tail
            self._send(await self._execute(id, function, args))
        except asyncio.CancelledError:
            self._send(encode_error(id, Code.SHUTTING_DOWN, "the session ended before it ran"))
            raise
        except Exception:
            log.exception("internal error while running %s", function.name)
            self._send(encode_error(id, Code.INTERNAL, "internal server error"))
        finally:
            del self.tasks[id]
            if done is not None:
                done.set_result(None)
                for slot in function.slots:
                    if self._tails.get(slot) is done:
                        del self._tails[slot]

    async def _execute(self, id: SubmitId, function: Function, args: list[Any]) -> bytes:
        """Run one submit; return the frame that answers it. Commits or rolls back state."""
        full: list[Any] = []
        snapshots: list[tuple[State, Any]] = []
        public = iter(args)
        for slot in function.input_slots:
            if slot is None:
                full.append(next(public))
            else:
                value = self.get(slot)
                full.append(value)
                if slot.snapshot:
                    snapshots.append((slot, copy_value(value)))
        try:
            returned = await self._runner.call(function, full)
            outputs, new_states = function.split_outputs(returned)
            frame = encode_result(id, outputs)
        except asyncio.CancelledError:
            # A sync function may still be running in its thread; it keeps the
            # object it was given, while the session gets the snapshot back.
            self._restore(snapshots)
            raise
        except (BadValue, LocalProtocolError) as exc:
            self._restore(snapshots)
            return encode_error(id, Code.FN_ERROR, f"{function.name} returned a bad value: {exc}")
        except Exception as exc:
            self._restore(snapshots)
            log.warning("%s raised %s: %s", function.name, type(exc).__name__, exc, exc_info=True)
            return encode_error(id, Code.FN_ERROR, self._describe_exception(function, exc))
        for slot, value in new_states:
            self.state[slot] = value
        return frame

    def _restore(self, snapshots: list[tuple[State, Any]]) -> None:
        for slot, value in snapshots:
            self.state[slot] = value

    def _describe_exception(self, function: Function, exc: Exception) -> str:
        text = f"{function.name} raised {type(exc).__name__}: {exc}"
        if self.settings.debug:
            text += "\n" + "".join(traceback.format_exception(exc))
        return text

    # -- end -----------------------------------------------------------------

    async def close(self) -> None:
        """End the session: cancel what is in flight, then run the end hooks once."""
        if self._ended:
            return
        self._ended = True
        self.closed = True
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for hook in self.app.session_end_hooks:
            await self._runner.call_hook(hook, self)

    async def drain(self, grace: float) -> None:
        """Stop admitting submits and wait up to ``grace`` seconds for in-flight ones."""
        self.closed = True
        tasks = list(self.tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
