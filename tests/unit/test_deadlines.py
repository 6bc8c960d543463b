"""Request deadlines kept by one sweeping timer: due tasks are cancelled and known as expired, others are not."""

from __future__ import annotations

import asyncio
import contextlib

from lsd.api.deadlines import Deadlines


async def test_a_due_request_is_cancelled_and_known_as_expired() -> None:
    deadlines = Deadlines(0.05, tick_s=0.01)
    slow = asyncio.create_task(asyncio.sleep(10))
    answered = asyncio.create_task(asyncio.sleep(10))
    deadlines.start(slow)
    deadlines.start(answered)
    deadlines.stop(answered)  # its response started: no deadline any more
    await asyncio.sleep(0.1)
    assert slow.cancelled() and deadlines.expired(slow)
    assert not deadlines.expired(slow)  # asked once
    assert not answered.done() and not deadlines.expired(answered)
    answered.cancel()
    assert deadlines._timer is None  # nothing left to watch: the timer is not re-armed


async def test_the_deadline_never_fires_early() -> None:
    deadlines = Deadlines(0.1, tick_s=0.02)
    loop = asyncio.get_running_loop()
    started = loop.time()
    task = asyncio.create_task(asyncio.sleep(10))
    deadlines.start(task)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled() and deadlines.expired(task)
    assert loop.time() - started >= 0.1  # never early (late only by a tick plus the loop's own lateness)


async def test_a_request_that_swallowed_its_cancellation_leaves_nothing_behind() -> None:
    deadlines = Deadlines(0.01, tick_s=0.01)

    async def stubborn() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)

    task = asyncio.create_task(stubborn())
    deadlines.start(task)
    await task  # cancelled by its deadline, which it swallowed: nobody asked expired()
    deadlines.stop(task)  # what the front door does when the request ends
    assert not deadlines.expired(task) and not deadlines._due
