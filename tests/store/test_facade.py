"""``Store`` (``app.store``) and ``SyncStore`` (``app.store.sync``): each operation is
the serving backend's, declared once in ``StoreBackend``."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.store.helpers import BOUND, bounded
from tether.app.runtime import Runtime
from tether.store import MemoryBackend, Store, StoreBackend, StoreError

OPERATIONS = {
    name
    for name, member in vars(StoreBackend).items()
    if inspect.iscoroutinefunction(member) and name not in ("ping", "close")
}


@contextlib.contextmanager
def serving(
    store: Store, loop: asyncio.AbstractEventLoop, backend: StoreBackend | None = None
) -> Iterator[list[tuple[str, Any]]]:
    """``store`` attached to a runtime on ``loop`` (as ``App.attach`` does); yields
    what is published through it."""
    published: list[tuple[str, Any]] = []
    runtime = Runtime(
        loop,
        backend or store.backend,
        lambda topic, data, retain: published.append((topic, data)),
        lambda topic: None,
    )
    store.attach(runtime)
    try:
        yield published
    finally:
        store.detach(runtime)


# -- the operations -----------------------------------------------------------


def test_store_and_store_sync_offer_exactly_the_backend_protocols_operations() -> None:
    store = Store()
    assert len(OPERATIONS) == 13  # with expire
    for name in OPERATIONS:
        assert callable(getattr(store, name)), name
        assert callable(getattr(store.sync, name)), name
    public = {name for name in dir(Store) if not name.startswith("_")}
    assert public - {"attach", "detach", "run_sync"} == OPERATIONS
    assert {name for name in dir(store.sync) if not name.startswith("_")} == OPERATIONS


def test_each_operation_has_the_signature_and_doc_of_the_backend_protocol() -> None:
    store = Store()
    for name in OPERATIONS:
        declared = getattr(StoreBackend, name)
        expected = inspect.signature(declared)
        expected = expected.replace(parameters=list(expected.parameters.values())[1:])
        assert inspect.signature(getattr(store, name)) == expected, name
        assert inspect.signature(getattr(store.sync, name)) == expected, name
        assert declared.__doc__
        assert getattr(store, name).__doc__ == declared.__doc__
        assert getattr(Store, name).__doc__ == declared.__doc__
        assert getattr(store.sync, name).__qualname__ == f"SyncStore.{name}"


async def test_an_operation_fetched_before_attach_runs_on_the_backend_serving_when_called() -> None:
    store = Store()
    incr = store.incr
    served = MemoryBackend()
    with serving(store, asyncio.get_running_loop(), served):
        assert await incr("n", 5) == 5
    assert await served.get("n") == 5
    assert await store.get("n") is None
    assert await incr("n") == 1


async def test_attach_lends_the_backend_the_runtimes_publish_and_detach_takes_it_back() -> None:
    store = Store()
    with serving(store, asyncio.get_running_loop()) as published:
        await store.list_append("log", "hi", topic="room")
        await store.lb_add("b", "ann", 3, top=1, topic="scores")
        assert published == [("room", "hi"), ("scores", [3])]
    assert store.backend.publisher is None
    await store.list_append("log", "unheard", topic="room")
    assert len(published) == 2


def test_a_store_made_with_a_backend_uses_it_and_returns_to_it_after_detach() -> None:
    backend = MemoryBackend()
    store = Store(backend)
    assert store.backend is backend
    loop = asyncio.new_event_loop()
    try:
        with serving(store, loop, MemoryBackend()):
            assert store.backend is not backend
        assert store.backend is backend
    finally:
        loop.close()


# -- store.sync ---------------------------------------------------------------


async def test_store_sync_from_a_thread_pool_is_exact(store: Store) -> None:
    loop = asyncio.get_running_loop()

    def work(worker: int) -> int:
        for i in range(20):
            store.sync.incr("n")
            store.sync.update("seen", lambda v, w=worker, i=i: [*v, f"{w}-{i}"], [])
            store.sync.lb_incr("b", f"w{worker}")
        result = store.sync.get("n")
        assert isinstance(result, int)
        return result

    with serving(store, loop), ThreadPoolExecutor(max_workers=6) as pool:
        results = await bounded(
            asyncio.gather(*(loop.run_in_executor(pool, work, w) for w in range(6)))
        )
    assert max(results) == 6 * 20
    assert await store.get("n") == 6 * 20
    assert len(await store.get("seen")) == 6 * 20
    assert len(set(await store.get("seen"))) == 6 * 20
    assert await store.lb_top("b", 1) in ([(f"w{w}", 20.0)] for w in range(6))


async def test_store_sync_raises_store_errors_in_the_calling_thread(store: Store) -> None:
    loop = asyncio.get_running_loop()
    await store.set("k", "text")

    def misuse() -> None:
        store.sync.incr("k")

    with serving(store, loop), pytest.raises(StoreError, match="not a number"):
        await bounded(loop.run_in_executor(None, misuse))


async def test_store_sync_on_the_event_loop_is_refused_with_a_hint(store: Store) -> None:
    with serving(store, asyncio.get_running_loop()), pytest.raises(StoreError, match="await store"):
        store.sync.get("k")


def test_store_sync_without_a_running_server_is_refused() -> None:
    store = Store()
    with pytest.raises(StoreError, match="no server is running"):
        store.sync.get("k")


def test_store_sync_has_no_close_and_no_unknown_operations() -> None:
    store = Store()
    with pytest.raises(AttributeError):
        store.sync.close  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(AttributeError):
        store.sync.nonsense  # type: ignore[attr-defined]  # noqa: B018


def test_store_sync_from_a_plain_thread_reaches_the_attached_loop() -> None:
    store = Store()
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        with serving(store, loop):
            assert store.sync.incr("n", 5) == 5
            assert store.sync.get("n") == 5
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(BOUND)
        loop.close()
