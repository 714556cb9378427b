"""Submit ordering by state slot, without a socket or a session."""

from __future__ import annotations

import asyncio

from tether.core.ordering import SlotOrder


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_submits_on_one_slot_run_in_arrival_order() -> None:
    order = SlotOrder()
    loop = asyncio.get_running_loop()
    ran: list[int] = []

    async def submit(n: int) -> None:
        turn = order.claim(["history"], loop)
        await asyncio.sleep(0.01 * (3 - n))  # later arrivals would finish first
        await SlotOrder.wait(turn)
        ran.append(n)
        order.release(turn)

    await asyncio.gather(*(submit(n) for n in range(3)))
    assert ran == [0, 1, 2]
    assert order.busy() == 0


async def test_submits_that_share_no_slot_do_not_wait_for_each_other() -> None:
    order = SlotOrder()
    loop = asyncio.get_running_loop()
    first = order.claim(["a"], loop)
    second = order.claim(["b"], loop)
    assert second[1] == []  # (slots, waits, done)
    await asyncio.wait_for(SlotOrder.wait(second), 1)
    order.release(first)
    order.release(second)


async def test_a_submit_on_two_slots_waits_for_the_last_claim_of_each() -> None:
    order = SlotOrder()
    loop = asyncio.get_running_loop()
    a = order.claim(["a"], loop)
    b = order.claim(["b"], loop)
    both = order.claim(["a", "b"], loop)
    assert both[1] == [a[2], b[2]]
    order.release(a)
    await settle()
    assert not all(w.done() for w in both[1])
    order.release(b)
    await asyncio.wait_for(SlotOrder.wait(both), 1)


async def test_a_turn_ended_early_does_not_let_the_next_overtake_its_predecessor() -> None:
    order = SlotOrder()
    loop = asyncio.get_running_loop()
    running = order.claim(["s"], loop)
    cancelled = order.claim(["s"], loop)  # e.g. cancelled while it waited
    following = order.claim(["s"], loop)
    order.release(cancelled)
    await settle()
    assert not following[1][0].done()  # still behind the running one
    order.release(running)
    await asyncio.wait_for(SlotOrder.wait(following), 1)
    order.release(following)
    assert order.busy() == 0


async def test_releasing_a_turn_twice_is_harmless() -> None:
    order = SlotOrder()
    loop = asyncio.get_running_loop()
    turn = order.claim(["s"], loop)
    order.release(turn)
    order.release(turn)
    assert turn[2].done() and order.busy() == 0
