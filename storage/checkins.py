"""Check-ins: claiming due conversations across workers, and the send pacing they share."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from storage.database import Executor
from storage.sql import Statement, read_row


@dataclass(frozen=True, slots=True)
class DueConversation:
    chat_id: int
    due_at: datetime
    timezone: str | None


# Rows another worker holds are skipped, not waited for.
_DUE = Statement("""
    SELECT c.chat_id, c.next_checkin_at AS due_at, u.timezone
      FROM conversations AS c JOIN users AS u ON u.id = c.user_id
     WHERE c.next_checkin_at <= :now AND c.active AND c.checkins_enabled AND c.checkins_unanswered < :max_unanswered
       AND c.held_for IS NULL
     ORDER BY c.next_checkin_at
     LIMIT :limit
       FOR UPDATE OF c SKIP LOCKED
""")
_PLAN = Statement("UPDATE conversations SET next_checkin_at = CAST(:at AS timestamptz) WHERE chat_id = :chat_id")
_CLAIM = Statement("""
    WITH claimed AS (
        INSERT INTO checkins (chat_id, due_at, claimed_by, lease_until)
        VALUES (:chat_id, :due_at, :worker, :lease_until)
        ON CONFLICT (chat_id, due_at) DO NOTHING
        RETURNING id
    ), pushed AS (
        UPDATE conversations SET next_checkin_at = :lease_until WHERE chat_id = :chat_id
    )
    SELECT id FROM claimed
""")
_STILL_MINE = Statement("""
    SELECT next_checkin_at, checkins_unanswered FROM conversations WHERE chat_id = :chat_id FOR UPDATE
""")
_RECORD_SENT = Statement("""
    UPDATE conversations
       SET checkins_unanswered = checkins_unanswered + 1, last_checkin_at = now(), bot_messages = bot_messages + 1,
           last_bot_message_at = now(), next_checkin_at = CAST(:next_at AS timestamptz), updated_at = now()
     WHERE chat_id = :chat_id
""")
_FINISH = Statement("""
    UPDATE checkins SET status = :status, message_id = CAST(:message_id AS bigint), note = CAST(:note AS text),
                        finished_at = now()
     WHERE id = :claim_id
""")
# A worker's open claims go back: each chat falls due now for another worker, and a sweep of
# the leaving worker still running finds the plan changed and stores nothing.
_RELEASE = Statement("""
    WITH mine AS (
        UPDATE checkins SET status = 'released', finished_at = now(), note = 'handed back at shutdown'
         WHERE claimed_by = :worker AND status = 'claimed'
        RETURNING chat_id, lease_until
    ), due AS (
        UPDATE conversations c SET next_checkin_at = now()
          FROM mine WHERE c.chat_id = mine.chat_id AND c.next_checkin_at = mine.lease_until
        RETURNING c.chat_id
    )
    SELECT count(*) FROM due
""")
_SILENT_CLOSE = Statement("""
    SELECT chat_id FROM conversations WHERE state = 'close' AND last_user_message_at < :before LIMIT :limit
""")
_SEND_SLOT = Statement("""
    INSERT INTO send_slots (name, next_slot_at) VALUES (:name, now() + CAST(:interval AS interval))
    ON CONFLICT (name) DO UPDATE
       SET next_slot_at = greatest(send_slots.next_slot_at, now()) + CAST(:interval AS interval)
    RETURNING next_slot_at - CAST(:interval AS interval)
""")


class CheckinRepo:
    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def due(self, now: datetime, max_unanswered: int, limit: int) -> list[DueConversation]:
        """Due conversations, locked until the transaction ends."""
        rows = await self.executor.fetch(_DUE, now=now, max_unanswered=max_unanswered, limit=limit)
        return [read_row(DueConversation, row) for row in rows]

    async def plan(self, chat_id: int, at: datetime | None) -> None:
        await self.executor.execute(_PLAN, chat_id=chat_id, at=at)

    async def claim(self, chat_id: int, due_at: datetime, worker: str, lease_until: datetime) -> int | None:
        """Record the claim and push the due time by the lease, so a dead worker's claim expires."""
        claim_id: int | None = await self.executor.fetchval(
            _CLAIM, chat_id=chat_id, due_at=due_at, worker=worker, lease_until=lease_until
        )
        return claim_id

    async def still_mine(self, chat_id: int, lease_until: datetime) -> int | None:
        """Lock the conversation; its unanswered count if nobody (a reply, another worker) changed the plan."""
        row = await self.executor.fetchrow(_STILL_MINE, chat_id=chat_id)
        if row is None or row["next_checkin_at"] != lease_until:
            return None
        return int(row["checkins_unanswered"])

    async def record_sent(self, chat_id: int, *, claim_id: int, message_id: int, next_at: datetime | None) -> None:
        await self.executor.execute(_RECORD_SENT, chat_id=chat_id, next_at=next_at)
        await self.finish(claim_id, "sent", message_id=message_id)

    async def finish(
        self, claim_id: int, status: str, *, message_id: int | None = None, note: str | None = None
    ) -> None:
        await self.executor.execute(_FINISH, claim_id=claim_id, status=status, message_id=message_id, note=note)

    async def release(self, worker: str) -> int:
        return int(await self.executor.fetchval(_RELEASE, worker=worker))

    async def silent_close(self, before: datetime, limit: int) -> list[int]:
        return [row["chat_id"] for row in await self.executor.fetch(_SILENT_CLOSE, before=before, limit=limit)]

    async def send_slot(self, name: str, interval: timedelta) -> datetime:
        """The moment this sender may send; every worker draws from the same row."""
        slot: datetime = await self.executor.fetchval(_SEND_SLOT, name=name, interval=interval)
        return slot
