"""Messages of a chat: storing them, what is still owed a reply, the recent history."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.dto import MessageRow
from storage.models import Message, table_of

# The reply path's statements are built once, on the table (see storage.conversations).
_MESSAGES = table_of(Message)
_COLUMN = _MESSAGES.c
_ROW_COLUMNS = [_COLUMN[name] for name in MessageRow.__slots__]  # in MessageRow order
_ADDED_FIELDS = (
    "chat_id",
    "role",
    "kind",
    "text",
    "telegram_message_id",
    "update_id",
    "sentiment_negative",
    "sentiment_positive",
    "delivered_at",
)


def _insert(*, answered: bool) -> Any:
    # A user's Telegram message is stored at most once.
    return (
        insert(_MESSAGES)
        .values(
            answered_at=func.now() if answered else None,
            **{name: bindparam(f"b_{name}", type_=_COLUMN[name].type) for name in _ADDED_FIELDS},
        )
        .on_conflict_do_nothing(
            index_elements=[_COLUMN.chat_id, _COLUMN.telegram_message_id],
            index_where=sql("role = 'user' AND telegram_message_id IS NOT NULL"),
        )
        .returning(_COLUMN.id)
    )


_ADD = {answered: _insert(answered=answered) for answered in (False, True)}
_PENDING = (
    select(*_ROW_COLUMNS)
    .where(_COLUMN.chat_id == bindparam("b_chat_id"), _COLUMN.role == "user", _COLUMN.answered_at.is_(None))
    .order_by(_COLUMN.id)
)
_RECENT = (
    select(*_ROW_COLUMNS)
    .where(_COLUMN.chat_id == bindparam("b_chat_id"), _COLUMN.id > bindparam("b_after_id"), _COLUMN.recallable)
    .order_by(_COLUMN.id.desc())
    .limit(bindparam("b_limit"))
)
_MARK_ANSWERED = (
    update(_MESSAGES)
    .where(
        _COLUMN.chat_id == bindparam("b_chat_id"),
        _COLUMN.role == "user",
        _COLUMN.answered_at.is_(None),
        _COLUMN.id <= bindparam("b_through_id"),
    )
    .values(answered_at=func.now())
)
_MARK_DELIVERED = (
    update(_MESSAGES)
    .where(_COLUMN.id == bindparam("b_message_id"))
    .values(
        delivered_at=func.now(),
        telegram_message_id=bindparam("b_telegram_message_id", type_=_COLUMN["telegram_message_id"].type),
    )
)


def _rows(result: Any) -> list[MessageRow]:
    return [MessageRow(*row) for row in result]


class MessageRepo:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self,
        chat_id: int,
        *,
        role: str,
        kind: str,
        text: str,
        telegram_message_id: int | None = None,
        update_id: int | None = None,
        sentiment_negative: float | None = None,
        sentiment_positive: float | None = None,
        answered: bool = False,
        delivered_at: datetime | None = None,
    ) -> int | None:
        """Store a message; None when this Telegram message of the user is already stored."""
        params = {
            "b_chat_id": chat_id,
            "b_role": role,
            "b_kind": kind,
            "b_text": text,
            "b_telegram_message_id": telegram_message_id,
            "b_update_id": update_id,
            "b_sentiment_negative": sentiment_negative,
            "b_sentiment_positive": sentiment_positive,
            "b_delivered_at": delivered_at,
        }
        added: int | None = await self.session.scalar(_ADD[answered], params)
        return added

    async def pending(self, chat_id: int) -> list[MessageRow]:
        """User messages still owed a reply, oldest first."""
        return _rows(await self.session.execute(_PENDING, {"b_chat_id": chat_id}))

    async def recent(self, chat_id: int, after_id: int, limit: int) -> list[MessageRow]:
        """The newest `limit` messages after `after_id` the user has not asked to forget, oldest first."""
        params = {"b_chat_id": chat_id, "b_after_id": after_id, "b_limit": limit}
        return _rows(await self.session.execute(_RECENT, params))[::-1]

    async def on_day(self, chat_id: int, start: datetime, end: datetime, limit: int) -> list[MessageRow]:
        rows = _rows(
            await self.session.execute(
                select(*_ROW_COLUMNS)
                .where(
                    Message.chat_id == chat_id,
                    Message.created_at >= start,
                    Message.created_at < end,
                    Message.recallable,
                )
                .order_by(Message.id.desc())
                .limit(limit)
            )
        )
        return rows[::-1]

    async def mark_answered(self, chat_id: int, through_id: int) -> None:
        await self.session.execute(_MARK_ANSWERED, {"b_chat_id": chat_id, "b_through_id": through_id})

    async def mark_delivered(self, message_id: int, telegram_message_id: int | None) -> None:
        params = {"b_message_id": message_id, "b_telegram_message_id": telegram_message_id}
        await self.session.execute(_MARK_DELIVERED, params)

    async def undelivered(self, chat_id: int, stored_before: datetime) -> list[MessageRow]:
        """Bot messages stored before `stored_before` (and within a day of it) but never sent."""
        return _rows(
            await self.session.execute(
                select(*_ROW_COLUMNS)
                .where(
                    Message.chat_id == chat_id,
                    Message.role == "assistant",
                    Message.delivered_at.is_(None),
                    Message.created_at < stored_before,
                    Message.created_at > stored_before - timedelta(days=1),
                )
                .order_by(Message.id)
            )
        )

    async def command_text(self, chat_id: int, message_id: int) -> str | None:
        text: str | None = await self.session.scalar(
            select(Message.text).where(
                Message.id == message_id, Message.chat_id == chat_id, Message.role == "user", Message.kind == "command"
            )
        )
        return text

    async def last_id(self, chat_id: int) -> int:
        last = await self.session.scalar(
            select(func.coalesce(func.max(Message.id), 0)).where(Message.chat_id == chat_id)
        )
        return int(last or 0)
