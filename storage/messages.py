"""Reading a chat's messages back: its recent history, and one day of it."""

from __future__ import annotations

from datetime import datetime

from storage.database import Executor
from storage.rows import MessageRow
from storage.sql import Statement, read_row

_COLUMNS = """id, chat_id, role, kind, text, created_at, telegram_message_id, answered_at, delivered_at,
              sentiment_negative, sentiment_positive, recall_note"""
_RECENT = Statement(f"""
    SELECT {_COLUMNS} FROM messages
     WHERE chat_id = :chat_id AND id > :after_id AND recallable
     ORDER BY id DESC LIMIT :limit
""")
_ON_DAY = Statement(f"""
    SELECT {_COLUMNS} FROM messages
     WHERE chat_id = :chat_id AND created_at >= :start AND created_at < :end AND recallable
     ORDER BY id DESC LIMIT :limit
""")


class MessageRepo:
    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def recent(self, chat_id: int, after_id: int, limit: int) -> list[MessageRow]:
        """The newest `limit` messages after `after_id` the user has not asked to forget, oldest first."""
        rows = await self.executor.fetch(_RECENT, chat_id=chat_id, after_id=after_id, limit=limit)
        return [read_row(MessageRow, row) for row in reversed(rows)]

    async def on_day(self, chat_id: int, start: datetime, end: datetime, limit: int) -> list[MessageRow]:
        """The day's last `limit` messages (from `start` to `end`), oldest first."""
        rows = await self.executor.fetch(_ON_DAY, chat_id=chat_id, start=start, end=end, limit=limit)
        return [read_row(MessageRow, row) for row in reversed(rows)]
