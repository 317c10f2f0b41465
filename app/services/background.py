"""Work off the reply path (replies after a message is stored, summaries), kept in one set so it is
neither lost nor leaked: drained by tests and the demo, given a grace period at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class Background:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Coroutine[Any, Any, Any], **bind: Any) -> asyncio.Task[None]:
        """Run `work` with the caller's log context (and `bind`); a failure is logged, never lost."""
        context = {**structlog.contextvars.get_contextvars(), **bind}

        async def run() -> None:
            structlog.contextvars.bind_contextvars(**context)
            try:
                await work
            except Exception:
                log.exception("background_failed")

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self) -> None:
        """Until nothing runs (what runs may start more)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self, grace: float) -> int:
        """Let what runs finish within `grace` seconds, cancel the rest; how many were cut short."""
        running = list(self._tasks)
        if not running:
            return 0
        _, late = await asyncio.wait(running, timeout=grace)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        return len(late)
