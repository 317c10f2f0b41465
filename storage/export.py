"""Everything stored about one user, as plain JSON-ready data (for /export)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from storage.database import Executor
from storage.sql import Row, Statement

_CHATS = "SELECT chat_id FROM conversations WHERE user_id = :user_id"
# The search column is PostgreSQL's derived form of a message's text, not something the user told us.
_MESSAGE_COLUMNS = """id, chat_id, role, kind, text, telegram_message_id, update_id, sentiment_negative,
                      sentiment_positive, answered_at, delivered_at, recall_note, recallable, created_at"""
_PARTS = {
    "user": Statement("SELECT * FROM users WHERE id = :user_id"),
    "conversations": Statement("SELECT * FROM conversations WHERE user_id = :user_id"),
    "messages": Statement(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id IN ({_CHATS}) ORDER BY id"),
    "state_transitions": Statement(f"SELECT * FROM state_transitions WHERE chat_id IN ({_CHATS}) ORDER BY id"),
    "daily_summaries": Statement(f"SELECT * FROM daily_summaries WHERE chat_id IN ({_CHATS}) ORDER BY day"),
    "memory_forgets": Statement(f"SELECT * FROM memory_forgets WHERE chat_id IN ({_CHATS}) ORDER BY id"),
    "followups": Statement(f"SELECT * FROM followups WHERE chat_id IN ({_CHATS}) ORDER BY id"),
    "voice_notes": Statement(f"SELECT * FROM voice_notes WHERE chat_id IN ({_CHATS}) ORDER BY id"),
    "access": Statement("SELECT * FROM user_access WHERE user_id = :user_id"),
    "access_decisions": Statement("SELECT * FROM access_decisions WHERE user_id = :user_id ORDER BY id"),
    "usage_days": Statement("SELECT * FROM usage_days WHERE user_id = :user_id ORDER BY day"),
}


def _plain(row: Row) -> dict[str, Any]:
    return {key: value.isoformat() if isinstance(value, datetime | date) else value for key, value in row.items()}


async def export_user(executor: Executor, user_id: int) -> dict[str, Any] | None:
    parts = {
        name: [_plain(row) for row in await executor.fetch(query, user_id=user_id)] for name, query in _PARTS.items()
    }
    if not parts["user"]:
        return None
    return {**parts, "user": parts["user"][0]}
