"""ThreadBridge: a blocking client's thread hands items to the event loop, each exactly once."""

from __future__ import annotations

import asyncio
import threading

from streamapp.sources.output import ThreadBridge


async def test_a_stalled_loop_never_receives_an_item_twice() -> None:
    loop = asyncio.get_running_loop()
    bridge = ThreadBridge(loop, maxsize=1)
    bridge.queue.put_nowait(0)  # full: the thread's puts wait for the loop
    results: list[bool] = []

    def producer() -> None:
        for i in (1, 2):
            # Many poll timeouts pass while the queue stays full.
            results.append(bridge.put_from_thread(i, poll=0.01))

    thread = threading.Thread(target=producer)
    thread.start()
    await asyncio.sleep(0.3)  # the loop is busy elsewhere (Kafka stalled, say)
    got: list[int] = []
    while len(got) < 3:
        got.append(await asyncio.wait_for(bridge.queue.get(), 5))
    await asyncio.to_thread(thread.join, 5)
    await asyncio.sleep(0.1)
    assert got == [0, 1, 2] and bridge.queue.empty()
    assert results == [True, True]


async def test_giving_up_withdraws_the_pending_put() -> None:
    loop = asyncio.get_running_loop()
    bridge = ThreadBridge(loop, maxsize=1)
    bridge.queue.put_nowait("first")
    stopping = threading.Event()
    result: list[bool] = []
    thread = threading.Thread(
        target=lambda: result.append(
            bridge.put_from_thread("late", give_up=stopping.is_set, poll=0.01)
        )
    )
    thread.start()
    await asyncio.sleep(0.1)
    stopping.set()
    await asyncio.to_thread(thread.join, 5)
    assert result == [False]
    assert await bridge.queue.get() == "first"
    await asyncio.sleep(0.1)
    assert bridge.queue.empty(), "a withdrawn item must not arrive later"
