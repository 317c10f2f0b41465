"""Updates set aside: what could not be read or handled, kept for an operator to look at."""

from __future__ import annotations

from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import DeadLetter, ProcessedUpdate, table_of

_DEAD = table_of(DeadLetter)
_ADD = (
    insert(_DEAD)
    .values(
        update_id=bindparam("update_id"),
        chat_id=bindparam("chat_id"),
        error=bindparam("error"),
        raw=bindparam("raw"),
        attempts=bindparam("attempts"),
    )
    .returning(_DEAD.c.id)
)
MAX_RAW_CHARS = 64_000


class DeadLetterRepo:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, *, update_id: int | None, chat_id: int | None, error: str, raw: str, attempts: int) -> bool:
        """Set an update aside; False when it was set aside before (a redelivery)."""
        if update_id is not None:
            seen = await self.session.scalar(select(_DEAD.c.id).where(_DEAD.c.update_id == update_id))
            if seen is not None:
                return False
            await self.session.execute(
                insert(table_of(ProcessedUpdate)).values(update_id=update_id, chat_id=chat_id).on_conflict_do_nothing()
            )
        await self.session.execute(
            _ADD,
            {
                "update_id": update_id,
                "chat_id": chat_id,
                "error": error[:2000],
                "raw": raw[:MAX_RAW_CHARS],
                "attempts": attempts,
            },
        )
        return True

    async def count(self) -> int:
        return int(await self.session.scalar(select(func.count()).select_from(_DEAD)) or 0)
