"""``app.store``: the handle functions use for global state.

``Store``'s operations are coroutines (await them in async functions);
``app.store.sync`` offers the same calls for synchronous functions running in
the thread pool: on the memory backend they run in the calling thread (under
the lock the loop takes too); on other backends they are routed to the loop.
Neither spells an operation out: each is one line,
``incr = _Awaitable(StoreBackend.incr)``, that forwards to the backend serving
at call time, with the signature and doc of ``StoreBackend`` (which is what
the type checker and ``help()`` see).
"""

from __future__ import annotations

import asyncio
import functools
import threading
import types
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, Self, TypeVar, overload

from ..errors import StoreError
from .backend import StoreBackend
from .memory import MemoryBackend

__all__ = ["Serving", "Store", "SyncStore"]

P = ParamSpec("P")
T = TypeVar("T")

_Operation = Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]


class Serving(Protocol):
    """What ``Store.attach`` takes (``app.runtime.Runtime``): a server's loop, backend
    and topics."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def backend(self) -> StoreBackend: ...

    @property
    def publish(self) -> Callable[[str, Any, bool], None]: ...


class _Member:
    """An operation declared in ``StoreBackend``, as a member of ``owner`` (set by the
    class statement); ``call(owner instance, *args, **kwargs)`` carries it out."""

    def __init__(self, op: Callable[..., Any], call: Callable[..., Any]) -> None:
        # The name, doc and signature (inspect.signature follows __wrapped__) of op.
        self._call = functools.update_wrapper(call, op)
        self.__doc__ = op.__doc__
        self.__wrapped__ = op

    def __set_name__(self, owner: type[Any], name: str) -> None:
        if name != self._call.__name__:
            raise TypeError(f"{owner.__name__}.{name} must be {self._call.__name__!r}")
        self._call.__qualname__ = f"{owner.__qualname__}.{name}"
        self._call.__module__ = owner.__module__

    def _bound(self, instance: Any) -> Any:
        return self if instance is None else types.MethodType(self._call, instance)


class _Awaitable(_Member, Generic[P, T]):
    """A ``Store`` member: the operation ``op`` of the backend serving at call time."""

    def __init__(self, op: _Operation[P, T]) -> None:
        name = op.__name__

        def call(store: Store, /, *args: Any, **kwargs: Any) -> Any:
            return getattr(store.backend, name)(*args, **kwargs)

        super().__init__(op, call)

    @overload
    def __get__(self, store: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, store: Store, owner: type[Any]) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, store: Store | None, owner: type[Any]) -> Any:
        return self._bound(store)


class _Blocking(_Member, Generic[P, T]):
    """A ``SyncStore`` member: ``op`` run on the server's loop, waited for in this thread."""

    def __init__(self, op: _Operation[P, T]) -> None:
        name = op.__name__

        def call(sync: SyncStore, /, *args: Any, **kwargs: Any) -> Any:
            store = sync._store
            return store.run_sync(getattr(store.backend, name)(*args, **kwargs))

        super().__init__(op, call)

    @overload
    def __get__(self, sync: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, sync: SyncStore, owner: type[Any]) -> Callable[P, T]: ...
    def __get__(self, sync: SyncStore | None, owner: type[Any]) -> Any:
        return self._bound(sync)


class Store:
    """The handle functions use for global state; the backend is chosen at serve time."""

    def __init__(self, backend: StoreBackend | None = None) -> None:
        self._own: StoreBackend = backend or MemoryBackend()
        self.backend: StoreBackend = self._own
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sync = SyncStore(self)

    # The operations (see StoreBackend for each one's signature and doc).
    get = _Awaitable(StoreBackend.get)
    set = _Awaitable(StoreBackend.set)
    delete = _Awaitable(StoreBackend.delete)
    expire = _Awaitable(StoreBackend.expire)
    incr = _Awaitable(StoreBackend.incr)
    update = _Awaitable(StoreBackend.update)
    list_append = _Awaitable(StoreBackend.list_append)
    list_range = _Awaitable(StoreBackend.list_range)
    lb_add = _Awaitable(StoreBackend.lb_add)
    lb_incr = _Awaitable(StoreBackend.lb_incr)
    lb_top = _Awaitable(StoreBackend.lb_top)
    lb_rank = _Awaitable(StoreBackend.lb_rank)
    lb_score = _Awaitable(StoreBackend.lb_score)

    def attach(self, runtime: Serving) -> None:
        """Serve through ``runtime`` (an ``app.runtime.Runtime``): its backend, its loop
        (``sync`` calls are routed to it) and its topics (for operations that publish
        their change). Called by ``App.attach``."""
        self.backend = runtime.backend
        self._loop = runtime.loop
        self.backend.publisher = runtime.publish
        if isinstance(self.backend, MemoryBackend):
            self.backend.loop = runtime.loop

    def detach(self, runtime: Serving) -> None:
        """Stop serving through ``runtime``; the store's own backend is back."""
        runtime.backend.publisher = None
        if isinstance(runtime.backend, MemoryBackend):
            runtime.backend.loop = None
        self._loop = None
        self.backend = self._own

    def run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a store coroutine from a worker thread and wait for its result.

        The memory backend's operations never suspend: they run here, in the
        calling thread, under the lock the loop takes too (``MemoryBackend.
        run_inline``). Other backends' run on the loop, waited for here: on Redis
        the operation is a network round trip anyway (the loop hop adds one
        thread switch to it), and a blocking twin of every operation (its scripts,
        ``update``'s WATCH retries, its error mapping) would be a second copy to
        keep in step; measured, the demo's score/chat ratio on Redis is about
        0.45 with the hop (0.39 before the memory change)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            coro.close()
            raise StoreError(
                "store.sync is used while no server is running; "
                "call it from a function served by tether"
            )
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop or threading.get_ident() == getattr(loop, "_thread_id", None):
            coro.close()
            raise StoreError(
                "store.sync blocks and cannot be used on the event loop "
                "(from an async function); use 'await store.<operation>(...)' instead"
            )
        backend = self.backend
        if isinstance(backend, MemoryBackend):
            return backend.run_inline(coro)
        return asyncio.run_coroutine_threadsafe(coro, loop).result()


class SyncStore:
    """Blocking twins of the ``Store`` operations, for sync functions in the thread pool."""

    __slots__ = ("_store",)

    def __init__(self, store: Store) -> None:
        self._store = store

    # The same operations, blocking.
    get = _Blocking(StoreBackend.get)
    set = _Blocking(StoreBackend.set)
    delete = _Blocking(StoreBackend.delete)
    expire = _Blocking(StoreBackend.expire)
    incr = _Blocking(StoreBackend.incr)
    update = _Blocking(StoreBackend.update)
    list_append = _Blocking(StoreBackend.list_append)
    list_range = _Blocking(StoreBackend.list_range)
    lb_add = _Blocking(StoreBackend.lb_add)
    lb_incr = _Blocking(StoreBackend.lb_incr)
    lb_top = _Blocking(StoreBackend.lb_top)
    lb_rank = _Blocking(StoreBackend.lb_rank)
    lb_score = _Blocking(StoreBackend.lb_score)
