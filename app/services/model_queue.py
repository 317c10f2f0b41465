"""A fair share of the model: at most MODEL_CONCURRENCY requests from this process at once (sized
to the model server's slots), the rest waiting here in order of who needs it most.

Ongoing conversations go first, then newcomers' first replies, then background work (summaries,
check-ins), each class in arrival order. One chat never has more than one reply in flight (its
reply lease), so a chat that floods takes one place in the line like anyone else. Time spent
waiting here is not counted against LLM_TIMEOUT: the fallback line is for a model that fails,
not for our own queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import itertools
import time
from collections.abc import AsyncIterator

from app.metrics import Metrics


class Priority(enum.IntEnum):
    CONVERSATION = 0  # a reply to someone who talked with the friend before
    NEWCOMER = 1  # a reply to someone whose first message this is
    BACKGROUND = 2  # summaries and check-ins: nobody is waiting on the other side


class FairQueue:
    def __init__(self, capacity: int, metrics: Metrics | None = None) -> None:
        self.capacity = capacity  # 0: no cap
        self.metrics = metrics or Metrics()
        self._busy = 0
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def depth(self) -> int:
        return len(self._waiting)

    @contextlib.asynccontextmanager
    async def slot(self, priority: Priority) -> AsyncIterator[None]:
        """Hold one of the model's slots for the block; waits for its turn first."""
        started = time.monotonic()
        if self.capacity > 0 and (self._busy >= self.capacity or self._waiting):
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (int(priority), next(self._order), turn))
            self.metrics.set("aifriend_model_queue_depth", len(self._waiting))
            try:
                await turn
            except BaseException:
                if turn.done() and not turn.cancelled():  # handed the slot just as we gave up: pass it on
                    self._busy -= 1
                    self._wake()
                else:
                    self._waiting = [entry for entry in self._waiting if entry[2] is not turn]
                    heapq.heapify(self._waiting)
                self.metrics.set("aifriend_model_queue_depth", len(self._waiting))
                raise
        else:
            self._busy += 1
        self.metrics.observe("aifriend_model_queue_wait_seconds", time.monotonic() - started)
        try:
            yield
        finally:
            self._busy -= 1
            self._wake()

    def _wake(self) -> None:
        """Hand free slots to the first in line (the slot counts as taken when handed over)."""
        while self._waiting and (self.capacity <= 0 or self._busy < self.capacity):
            _, _, turn = heapq.heappop(self._waiting)
            if turn.done():
                continue
            self._busy += 1
            turn.set_result(None)
        self.metrics.set("aifriend_model_queue_depth", len(self._waiting))
