"""Check-ins: claiming due conversations across workers, and the shared send pacing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Checkin, Conversation, SendSlot, User


@dataclass(frozen=True, slots=True)
class DueConversation:
    chat_id: int
    due_at: datetime
    timezone: str | None


class CheckinRepo:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def due(self, now: datetime, max_unanswered: int, limit: int) -> list[DueConversation]:
        """Due conversations, locked; rows another worker holds are skipped, not waited for."""
        rows = await self.session.execute(
            select(Conversation.chat_id, Conversation.next_checkin_at, User.timezone)
            .join(User, User.id == Conversation.user_id)
            .where(
                Conversation.next_checkin_at <= now,
                Conversation.active,
                Conversation.checkins_enabled,
                Conversation.checkins_unanswered < max_unanswered,
            )
            .order_by(Conversation.next_checkin_at)
            .limit(limit)
            .with_for_update(of=Conversation, skip_locked=True)
        )
        return [DueConversation(chat_id, due_at, tz) for chat_id, due_at, tz in rows if due_at is not None]

    async def plan(self, chat_id: int, at: datetime | None) -> None:
        await self.session.execute(
            update(Conversation).where(Conversation.chat_id == chat_id).values(next_checkin_at=at)
        )

    async def claim(self, chat_id: int, due_at: datetime, worker: str, lease_until: datetime) -> int | None:
        """Record the claim and push the due time by the lease, so a dead worker's claim expires."""
        claim_id = await self.session.scalar(
            insert(Checkin)
            .values(chat_id=chat_id, due_at=due_at, claimed_by=worker, lease_until=lease_until)
            .on_conflict_do_nothing(index_elements=[Checkin.chat_id, Checkin.due_at])
            .returning(Checkin.id)
        )
        await self.plan(chat_id, lease_until)
        return claim_id

    async def still_mine(self, chat_id: int, lease_until: datetime) -> int | None:
        """Lock the conversation; its unanswered count if nobody (a reply, another worker) changed the plan."""
        row = (
            await self.session.execute(
                select(Conversation.next_checkin_at, Conversation.checkins_unanswered)
                .where(Conversation.chat_id == chat_id)
                .with_for_update()
            )
        ).first()
        if row is None or row.next_checkin_at != lease_until:
            return None
        return int(row.checkins_unanswered)

    async def record_sent(self, chat_id: int, *, claim_id: int, message_id: int, next_at: datetime | None) -> None:
        await self.session.execute(
            update(Conversation)
            .where(Conversation.chat_id == chat_id)
            .values(
                checkins_unanswered=Conversation.checkins_unanswered + 1,
                last_checkin_at=func.now(),
                bot_messages=Conversation.bot_messages + 1,
                last_bot_message_at=func.now(),
                next_checkin_at=next_at,
                updated_at=func.now(),
            )
        )
        await self.finish(claim_id, "sent", message_id=message_id)

    async def finish(
        self, claim_id: int, status: str, *, message_id: int | None = None, note: str | None = None
    ) -> None:
        await self.session.execute(
            update(Checkin)
            .where(Checkin.id == claim_id)
            .values(status=status, message_id=message_id, note=note, finished_at=func.now())
        )

    async def release(self, worker: str) -> int:
        """Hand back `worker`'s open claims: each chat falls due now for another worker, and a
        sweep of ours still running finds the plan changed and stores nothing."""
        released = await self.session.execute(
            text(
                """
                WITH mine AS (
                    UPDATE checkins SET status = 'released', finished_at = now(), note = 'handed back at shutdown'
                     WHERE claimed_by = :worker AND status = 'claimed'
                    RETURNING chat_id, lease_until
                )
                UPDATE conversations c SET next_checkin_at = now()
                  FROM mine WHERE c.chat_id = mine.chat_id AND c.next_checkin_at = mine.lease_until
                RETURNING c.chat_id
                """
            ),
            {"worker": worker},
        )
        return len(released.all())

    async def silent_close(self, before: datetime, limit: int) -> list[int]:
        rows = await self.session.scalars(
            select(Conversation.chat_id)
            .where(Conversation.state == "close", Conversation.last_user_message_at < before)
            .limit(limit)
        )
        return list(rows)

    async def send_slot(self, name: str, interval: timedelta) -> datetime:
        """The moment this sender may send; every worker draws from the same row."""
        slot = await self.session.scalar(
            insert(SendSlot)
            .values(name=name, next_slot_at=func.now() + interval)
            .on_conflict_do_update(
                index_elements=[SendSlot.name],
                set_={"next_slot_at": func.greatest(SendSlot.next_slot_at, func.now()) + interval},
            )
            .returning(SendSlot.next_slot_at - interval)
        )
        assert isinstance(slot, datetime)
        return slot
