"""Deliveries written down together: one statement for every send that Telegram accepted meanwhile.

Each sender waits until its delivery is committed, as before; but while one statement is on its
way, the deliveries that come in gather, and the next statement records them all. A lone send
is written at once, as alone as before; under load, one round trip (and one commit) records
several. A crash between Telegram's answer and the commit leaves a send's fate unknown for at
most two round trips instead of one (the one in flight, then its own).
"""

from __future__ import annotations

import asyncio

from storage.database import Database
from storage.outbox import SenderRepo


class DeliveryLedger:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._waiting: list[tuple[int, int | None, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, send_id: int, telegram_message_id: int | None) -> None:
        """Return once the delivery is committed; raise what the statement that carried it raised."""
        done = asyncio.get_running_loop().create_future()
        done.add_done_callback(_retrieved)
        self._waiting.append((send_id, telegram_message_id, done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())
        await asyncio.shield(done)  # a sender cancelled meanwhile does not cancel the others' statement

    async def _write(self) -> None:
        batch: list[tuple[int, int | None, asyncio.Future[None]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    async with self.database.raw() as connection:
                        await SenderRepo(connection).sent([(send_id, message_id) for send_id, message_id, _ in batch])
                except Exception as exc:
                    _settle(batch, exc)
                else:
                    _settle(batch, None)
        finally:
            self._writer = None
            # Cancelled (the process is stopping): nobody waits forever for a statement that never ran.
            _settle(batch + self._waiting, ConnectionAbortedError("stopping before the delivery was recorded"))
            self._waiting = []


def _settle(batch: list[tuple[int, int | None, asyncio.Future[None]]], error: BaseException | None) -> None:
    for *_, done in batch:
        if done.done():
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)


def _retrieved(done: asyncio.Future[None]) -> None:
    """A sender that stopped waiting does not leave an error nobody looked at."""
    if not done.cancelled():
        done.exception()
