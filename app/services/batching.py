"""Calls that arrive while a statement is on its way go together in the next one.

Natural batching, as a database's group commit does it: a lone call is run at once, as alone
as it would be without this; under load, the calls that gather during one round trip share the
next. Nothing waits for a timer, so latency never grows at low load, and the batch grows with
the load exactly when the saved statements matter. Each caller gets its own result, or the
error of the statement that carried it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class NaturalBatch(Generic[Item, Result]):
    def __init__(self, run: Callable[[list[Item]], Awaitable[Sequence[Result]]]) -> None:
        """`run` takes the gathered items and returns one result per item, in their order."""
        self._run = run
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        done: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_retrieved)
        self._waiting.append((item, done))
        if self._worker is None:
            self._worker = asyncio.create_task(self._drain())
        return await asyncio.shield(done)  # one caller cancelled does not cancel the others' statement

    async def _drain(self) -> None:
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    answered = list(zip(batch, await self._run([item for item, _ in batch]), strict=True))
                except Exception as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for (_, done), result in answered:
                    if not done.done():
                        done.set_result(result)
        finally:
            self._worker = None
            # Cancelled (the process is stopping): nobody waits forever for a statement that never ran.
            for _, done in batch + self._waiting:
                if not done.done():
                    done.set_exception(ConnectionAbortedError("stopping before the statement ran"))
            self._waiting = []


def _retrieved(done: asyncio.Future[Any]) -> None:
    """A caller that stopped waiting does not leave an error nobody looked at."""
    if not done.cancelled():
        done.exception()
