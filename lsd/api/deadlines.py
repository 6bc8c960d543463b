"""Request deadlines (`gateway.request_timeout_s`) kept by one timer for all requests, not one per request.

A per-request `asyncio.timeout` arms, moves and cancels an event-loop timer for every request (~10 us each on
the hot path). Here a request registers its task and due time in a dict; one timer, armed only while some
request is waiting, wakes every `tick_s` and cancels the tasks that are due. A deadline therefore fires between
`timeout_s` and `timeout_s + tick_s` after the request started. The caller turns the cancellation into a 504
(`expired(task)` says whether the cancellation was ours) and removes its task once the response starts.
"""

from __future__ import annotations

import asyncio
from typing import Any

DEADLINE_MESSAGE = "lsd: gateway.request_timeout_s reached"


class Deadlines:
    def __init__(self, timeout_s: float, *, tick_s: float | None = None) -> None:
        self.timeout_s = timeout_s
        self.tick_s = tick_s if tick_s is not None else min(1.0, max(timeout_s / 10, 0.01))
        self._due: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def start(self, task: asyncio.Task[Any]) -> None:
        """`task` (the request's) must start its response within `timeout_s` from now."""
        loop = task.get_loop()
        self._due[task] = loop.time() + self.timeout_s
        if self._timer is None:
            self._timer = loop.call_later(self.tick_s, self._sweep, loop)

    def stop(self, task: asyncio.Task[Any]) -> None:
        """The response started, or the request ended: no deadline for `task` any more (and no note that it
        expired, should the request have swallowed its cancellation without asking)."""
        self._due.pop(task, None)
        self._expired.discard(task)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """Whether `task` was cancelled by its deadline (asked once, when its CancelledError arrives)."""
        if task in self._expired:
            self._expired.discard(task)
            return True
        return False

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        due = [task for task, at in self._due.items() if at <= now]
        for task in due:
            del self._due[task]
            if not task.done():
                self._expired.add(task)
                task.cancel(DEADLINE_MESSAGE)
        self._timer = loop.call_later(self.tick_s, self._sweep, loop) if self._due else None
