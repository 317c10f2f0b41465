"""Work that only a slow block needs: started by a timer once the block has run that long.

A reply's "typing" indicator and its lease renewals are for replies that take seconds; most
take milliseconds. A timer that is cancelled costs less than a task that is made and
cancelled, on every reply.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any


class WhenSlow:
    """`async with WhenSlow(after, work)`: `work()` runs from `after` seconds into the block until it
    ends (or `stop()`); a block that ends sooner never starts it."""

    __slots__ = ("_after", "_task", "_timer", "_work")

    def __init__(self, after: float, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._after = after
        self._work = work
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._after, self._start)

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    def _start(self) -> None:
        self._timer = None
        self._task = asyncio.create_task(self._work())

    async def stop(self) -> None:
        """End the work now (it is no longer wanted); the block may go on."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
