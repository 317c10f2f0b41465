"""Long-term memory: the rolling summary and the per-day summaries."""

from __future__ import annotations

from datetime import date

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.dto import DailySummaryRow
from storage.models import Conversation, DailySummary, table_of

_DAY_COLUMNS = table_of(DailySummary).c
_DAYS = (  # built once, on the table, as the reply path's statements are (see storage.conversations)
    select(_DAY_COLUMNS.day, _DAY_COLUMNS.text)
    .where(_DAY_COLUMNS.chat_id == bindparam("b_chat_id"), _DAY_COLUMNS.day < bindparam("b_before"))
    .order_by(_DAY_COLUMNS.day.desc())
    .limit(bindparam("b_limit"))
)


class MemoryRepo:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def days(self, chat_id: int, before: date, limit: int) -> list[DailySummaryRow]:
        """The latest day summaries before `before`, oldest first."""
        params = {"b_chat_id": chat_id, "b_before": before, "b_limit": limit}
        rows = (await self.session.execute(_DAYS, params)).all()
        return [DailySummaryRow(day, text) for day, text in reversed(rows)]

    async def has_day(self, chat_id: int, day: date) -> bool:
        found = await self.session.scalar(
            select(DailySummary.day).where(DailySummary.chat_id == chat_id, DailySummary.day == day)
        )
        return found is not None

    async def save_day(self, chat_id: int, day: date, text: str, through_message_id: int) -> None:
        await self.session.execute(
            insert(DailySummary)
            .values(chat_id=chat_id, day=day, text=text, through_message_id=through_message_id)
            .on_conflict_do_update(
                index_elements=[DailySummary.chat_id, DailySummary.day],
                set_={"text": text, "through_message_id": through_message_id, "updated_at": func.now()},
            )
        )

    async def fold(self, chat_id: int, *, expected_through: int, through: int, summary: str) -> bool:
        """Replace the rolling summary unless another worker folded first."""
        done = await self.session.scalar(
            update(Conversation)
            .where(Conversation.chat_id == chat_id, Conversation.summarized_through_id == expected_through)
            .values(memory_summary=summary, summarized_through_id=through)
            .returning(Conversation.chat_id)
        )
        return done is not None
