"""Deliveries written down together: one statement for every send that Telegram accepted meanwhile.

Each sender waits until its delivery is committed, as before; but while one statement is on its
way, the deliveries that come in gather, and the next statement records them all (a
`NaturalBatch`). A lone send is written at once, as alone as before; under load, one round trip
(and one commit) records several. A crash between Telegram's answer and the commit leaves a
send's fate unknown for at most two round trips instead of one (the one in flight, then its own).
"""

from __future__ import annotations

from app.services.batching import NaturalBatch
from storage.database import Database
from storage.outbox import SenderRepo


class DeliveryLedger:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._batch: NaturalBatch[tuple[int, int | None], None] = NaturalBatch(self._write)

    async def record(self, send_id: int, telegram_message_id: int | None) -> None:
        """Return once the delivery is committed; raise what the statement that carried it raised."""
        await self._batch.submit((send_id, telegram_message_id))

    async def _write(self, deliveries: list[tuple[int, int | None]]) -> list[None]:
        async with self.database.raw() as connection:
            await SenderRepo(connection).sent(deliveries)
        return [None] * len(deliveries)
