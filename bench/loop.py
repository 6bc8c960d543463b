"""Running a coroutine on uvloop, with SIGTERM stopping it as cleanly as Ctrl-C does."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """uvloop.run(coro); a SIGTERM meanwhile cancels it and raises KeyboardInterrupt, as Ctrl-C does.

    Without this the process-wide SIGTERM handler (bench.run's) would raise inside whichever callback runs."""

    async def main() -> T:
        task = asyncio.current_task()
        assert task is not None
        terminated = False

        def terminate() -> None:
            nonlocal terminated
            terminated = True
            task.cancel()

        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminate)
        try:
            return await coro
        except asyncio.CancelledError:
            if terminated:
                raise KeyboardInterrupt from None
            raise

    previous = signal.getsignal(signal.SIGTERM)
    try:
        return uvloop.run(main())
    finally:
        signal.signal(signal.SIGTERM, previous)  # the loop's removal of its handler left SIG_DFL behind
