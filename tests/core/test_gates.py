"""Per-function gates without a socket: fairness between sessions."""

from __future__ import annotations

import asyncio

from tether.core.gates import Gate


async def test_waiting_sessions_take_freed_slots_in_turn_and_within_their_share() -> None:
    gate = Gate(1, 100, 0.25)
    assert gate.try_acquire("A")
    order: list[str] = []

    async def wait(key: str, tag: str) -> None:
        await gate.wait(tag, lambda frame: None, key)
        order.append(tag)

    waiters = [
        asyncio.create_task(wait(key, f"{key}{i}"))
        for key, count in (("A", 3), ("B", 2), ("C", 1))
        for i in range(count)
    ]
    await asyncio.sleep(0)
    assert len(gate) == 6
    gate.release("A")  # A just had its turn: B, then C, then A again
    for started in range(1, 7):
        for _ in range(100):  # the waiter handed the slot resumes within a few steps
            if len(order) == started:
                break
            await asyncio.sleep(0)
        assert len(order) == started
        gate.release(order[-1][0])  # the submit that just started finishes
    await asyncio.wait_for(asyncio.gather(*waiters), 5)
    assert order == ["B0", "C0", "A0", "B1", "A1", "A2"]
    assert gate.running == 0 and len(gate) == 0


async def test_a_session_at_its_share_waits_while_another_takes_a_free_slot() -> None:
    gate = Gate(3, 100, 0.25, per_session=2)
    assert gate.try_acquire("A") and gate.try_acquire("A")
    assert not gate.try_acquire("A")  # at its share, though a slot is free
    assert gate.try_acquire("B")
    assert not gate.try_acquire("B")  # no slot free
