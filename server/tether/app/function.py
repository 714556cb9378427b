"""A registered function: its components, state slots and limits, read off its signature.

``build_function`` binds each ``"state"`` input to the parameter at the same
position (its default, copied per session, is the slot's default) and each
``"state"`` output to the n-th ``"state"`` input; ``tether.State`` objects name
slots explicitly and may be shared by several functions.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ..errors import AppError, BadValue
from .components import COMPONENTS, STATE, check_output, input_check
from .state import State

__all__ = ["DEFAULT", "ComponentSpec", "Function", "build_function"]

_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")

ComponentSpec = str | State


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Final[Any] = _Default()
"""``concurrency_limit=DEFAULT``: as many as the thread pool has threads."""


@dataclass(frozen=True, slots=True, eq=False)
class Function:
    """A registered function and everything a session needs to check its inputs, call it and
    answer."""

    name: str
    fn: Callable[..., Any]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    # Per input position: the State bound there, or None for a public input.
    input_slots: tuple[State | None, ...]
    # Per output position: the State it replaces, or None for a public output.
    output_slots: tuple[State | None, ...]
    public_inputs: tuple[str, ...]
    public_outputs: tuple[str, ...]
    labels: tuple[str, ...]
    slots: tuple[State, ...]
    is_async: bool
    description: str
    # "call" (plain or async function), "gen" (generator), "agen" (async generator)
    kind: str = "call"
    # How many submits of this function may run at once, server-wide
    # (DEFAULT: the thread pool size; None: unlimited).
    concurrency_limit: int | _Default | None = None
    # How many may wait for a free slot before submits get `queue_full` (None: the setting).
    max_queue: int | None = None
    # Seconds a submit may run before it ends with `timeout` (None: no limit).
    timeout: float | None = None
    # The human title clients show (``label=``); "" lets them make one from the name.
    label: str = ""
    # Per public input, its component's check (looked up once, not per submit).
    checks: tuple[Callable[[Any], Any], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checks = tuple(input_check(component) for component in self.public_inputs)
        object.__setattr__(self, "checks", checks)  # (frozen)

    @property
    def streams(self) -> bool:
        return self.kind != "call"

    def manifest(self) -> dict[str, Any]:
        """This function as it appears in the ``welcome`` message."""
        entry: dict[str, Any] = {
            "name": self.name,
            "inputs": list(self.public_inputs),
            "outputs": list(self.public_outputs),
            "labels": list(self.labels),
        }
        if self.description:
            entry["description"] = self.description
        if self.label:
            entry["label"] = self.label
        return entry

    def check_arguments(self, data: list[Any]) -> list[Any]:
        """Validate the public inputs of a submit; raise ``BadValue`` saying which is wrong."""
        expected = len(self.public_inputs)
        if len(data) != expected:
            raise BadValue(
                f"{self.name} takes {expected} input{'s' if expected != 1 else ''} "
                f"({', '.join(self.public_inputs) or 'none'}), got {len(data)}"
            )
        try:
            return [check(value) for check, value in zip(self.checks, data, strict=True)]
        except BadValue:
            pass
        for i, (check, value) in enumerate(zip(self.checks, data, strict=True)):
            try:
                check(value)
            except BadValue as exc:  # the first bad one, named
                raise BadValue(f"input {i} ({self.labels[i]}): {exc}") from None
        raise AssertionError("unreachable: a check failed once and not again")

    def split_outputs(self, returned: Any) -> tuple[list[Any], list[tuple[State, Any]]]:
        """Split a return value into public outputs and new state values."""
        n = len(self.outputs)
        if n == 0:
            return [], []
        if n == 1:
            values: Sequence[Any] = (returned,)
        else:
            if not isinstance(returned, (tuple, list)) or len(returned) != n:
                raise BadValue(
                    f"{self.name} must return {n} values ({', '.join(self.outputs)}), "
                    f"got {_describe(returned)}"
                )
            values = returned
        public: list[Any] = []
        states: list[tuple[State, Any]] = []
        for component, slot, value in zip(self.outputs, self.output_slots, values, strict=True):
            if slot is None:
                public.append(check_output(component, value))
            else:
                states.append((slot, value))
        return public, states


def _describe(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"{len(value)} values"
    return f"one {type(value).__name__}"


def build_function(
    fn: Callable[..., Any],
    inputs: ComponentSpec | Sequence[ComponentSpec] = (),
    outputs: ComponentSpec | Sequence[ComponentSpec] = (),
    *,
    name: str | None = None,
    concurrency_limit: int | None = DEFAULT,
    max_queue: int | None = None,
    timeout: float | None = None,
) -> Function:
    """A ``Function`` from a Python callable and its declared components (``App.add``
    documents the arguments); raises ``AppError`` naming what is wrong, in one line
    that starts with the file and line of ``fn`` (``myapp.py:12: chat: ...``)."""
    try:
        return _build(fn, inputs, outputs, name, concurrency_limit, max_queue, timeout)
    except AppError as exc:
        raise AppError(f"{_where(fn)}{exc}") from None


def _where(fn: Callable[..., Any]) -> str:
    """``file:line: `` of a function's definition (the file relative to the working
    directory when it is under it), or "" when it has none (a builtin, a partial)."""
    code = getattr(inspect.unwrap(getattr(fn, "func", fn)), "__code__", None)  # (a partial)
    if code is None:
        code = getattr(getattr(fn, "__call__", None), "__code__", None)  # noqa: B004
    if code is None:
        return ""
    path = code.co_filename
    try:
        relative = os.path.relpath(path)
    except ValueError:  # (another drive, on Windows)
        relative = path
    if not relative.startswith(".."):
        path = relative
    return f"{path}:{code.co_firstlineno}: "


def _build(
    fn: Callable[..., Any],
    inputs: ComponentSpec | Sequence[ComponentSpec],
    outputs: ComponentSpec | Sequence[ComponentSpec],
    name: str | None,
    concurrency_limit: int | None,
    max_queue: int | None,
    timeout: float | None,
) -> Function:
    fname = str(name or getattr(fn, "__name__", ""))
    if not _NAME.fullmatch(fname):
        raise AppError(f"function name {fname!r} must match {_NAME.pattern}")
    if (
        concurrency_limit is not DEFAULT
        and concurrency_limit is not None
        and (type(concurrency_limit) is not int or concurrency_limit < 1)
    ):
        raise AppError(f"{fname}: concurrency_limit must be a positive int or None")
    if max_queue is not None and (type(max_queue) is not int or max_queue < 0):
        raise AppError(f"{fname}: max_queue must be a non-negative int or None")
    if timeout is not None and (
        not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0
    ):
        raise AppError(f"{fname}: timeout must be a positive number of seconds or None")
    ins = _as_list(inputs)
    outs = _as_list(outputs)
    params = _positional_params(fn, fname, len(ins))

    input_slots: list[State | None] = []
    labels: list[str] = []
    public_inputs: list[str] = []
    private: dict[int, State] = {}
    for i, spec in enumerate(ins):
        param = params[i]
        if isinstance(spec, State):
            input_slots.append(spec)
        elif spec == STATE:
            default = None if param.default is inspect.Parameter.empty else param.default
            slot = State(default, name=f"{fname}.{param.name}")
            private[i] = slot
            input_slots.append(slot)
        else:
            _check_component(spec, fname)
            input_slots.append(None)
            public_inputs.append(spec)
            labels.append(param.name)

    # The n-th plain "state" output writes back the n-th plain "state" input.
    plain_inputs = [private[i] for i in sorted(private)]
    output_slots: list[State | None] = []
    n_plain = 0
    for spec in outs:
        if isinstance(spec, State):
            output_slots.append(spec)
        elif spec == STATE:
            if n_plain >= len(plain_inputs):
                raise AppError(f"{fname}: a 'state' output needs a matching 'state' input")
            output_slots.append(plain_inputs[n_plain])
            n_plain += 1
        else:
            _check_component(spec, fname)
            output_slots.append(None)

    slots: list[State] = []
    for maybe in (*input_slots, *output_slots):
        if maybe is not None and maybe not in slots:
            slots.append(maybe)

    doc = inspect.getdoc(fn) or ""
    function = Function(
        name=fname,
        fn=fn,
        inputs=tuple(_spec_name(s) for s in ins),
        outputs=tuple(_spec_name(s) for s in outs),
        input_slots=tuple(input_slots),
        output_slots=tuple(output_slots),
        public_inputs=tuple(public_inputs),
        public_outputs=tuple(
            _spec_name(s) for s, slot in zip(outs, output_slots, strict=True) if slot is None
        ),
        labels=tuple(labels),
        slots=tuple(slots),
        is_async=_is_async(fn),
        description=doc.splitlines()[0] if doc else "",
        kind=_kind(fn),
        concurrency_limit=concurrency_limit,
        max_queue=max_queue,
        timeout=float(timeout) if timeout is not None else None,
    )
    return function


def _as_list(spec: ComponentSpec | Sequence[ComponentSpec]) -> list[ComponentSpec]:
    if isinstance(spec, (str, State)):
        return [spec]
    return list(spec)


def _spec_name(spec: ComponentSpec) -> str:
    return STATE if isinstance(spec, State) else spec


def _check_component(spec: Any, fname: str) -> None:
    if spec not in COMPONENTS:
        raise AppError(
            f"{fname}: unknown component {spec!r}; expected one of {', '.join(COMPONENTS)} "
            "or a tether.State"
        )


def _kind(fn: Callable[..., Any]) -> str:
    if inspect.isasyncgenfunction(fn):
        return "agen"
    if inspect.isgeneratorfunction(fn):
        return "gen"
    call = getattr(fn, "__call__", None)  # noqa: B004
    if not inspect.isroutine(fn) and call is not None:
        if inspect.isasyncgenfunction(call):
            return "agen"
        if inspect.isgeneratorfunction(call):
            return "gen"
    return "call"


def _is_async(fn: Callable[..., Any]) -> bool:
    """True for coroutine functions, also behind partial() or an async ``__call__``."""
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - we want the bound method
    return not inspect.isroutine(fn) and inspect.iscoroutinefunction(call)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _positional_params(fn: Callable[..., Any], fname: str, count: int) -> list[inspect.Parameter]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise AppError(f"{fname}: cannot read its signature ({exc})") from None
    params = [
        p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    has_varargs = any(p.kind is p.VAR_POSITIONAL for p in sig.parameters.values())
    kw_required = [
        p.name
        for p in sig.parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.default is inspect.Parameter.empty
    ]
    if kw_required:
        raise AppError(
            f"{fname}: keyword-only parameters {kw_required} need defaults "
            "(inputs are passed by position)"
        )
    if len(params) < count and not has_varargs:
        raise AppError(
            f"{fname} takes {_plural(len(params), 'positional parameter')} but has "
            f"{_plural(count, 'input')} (one parameter per input, in order)"
        )
    if len(params) > count:
        extra = [p.name for p in params[count:] if p.default is inspect.Parameter.empty]
        if extra:
            raise AppError(f"{fname}: parameters {extra} have no input and no default")
    while len(params) < count:
        params.append(inspect.Parameter(f"arg{len(params)}", inspect.Parameter.POSITIONAL_ONLY))
    return params[:count]
