"""Everything stored about one user, as plain JSON-ready data (for /export)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Conversation, DailySummary, MemoryForget, Message, StateTransition, User, table_of

# The search index column is PostgreSQL's derived form of `text`, not something the user told us.
_MESSAGE_COLUMNS = [column for column in table_of(Message).c if column.name != "search"]


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime | date) else value


def _rows(result: Any) -> list[dict[str, Any]]:
    return [{key: _plain(value) for key, value in row.items()} for row in result.mappings()]


async def export_user(session: AsyncSession, user_id: int) -> dict[str, Any] | None:
    users = _rows(await session.execute(select(User.__table__).where(User.id == user_id)))
    if not users:
        return None
    chats = select(Conversation.chat_id).where(Conversation.user_id == user_id)
    return {
        "user": users[0],
        "conversations": _rows(
            await session.execute(select(Conversation.__table__).where(Conversation.user_id == user_id))
        ),
        "messages": _rows(
            await session.execute(select(*_MESSAGE_COLUMNS).where(Message.chat_id.in_(chats)).order_by(Message.id))
        ),
        "state_transitions": _rows(
            await session.execute(
                select(StateTransition.__table__).where(StateTransition.chat_id.in_(chats)).order_by(StateTransition.id)
            )
        ),
        "daily_summaries": _rows(
            await session.execute(
                select(DailySummary.__table__).where(DailySummary.chat_id.in_(chats)).order_by(DailySummary.day)
            )
        ),
        "memory_forgets": _rows(
            await session.execute(
                select(MemoryForget.__table__).where(MemoryForget.chat_id.in_(chats)).order_by(MemoryForget.id)
            )
        ),
    }
