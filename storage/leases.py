"""The reply lease: which worker, of any number of processes, writes a chat's replies right now.

It lives in the conversation row, so a message's store and a lease's release are ordered by
PostgreSQL. A worker that dies simply lets its lease run out; the healer then answers the chat.
"""

from __future__ import annotations

import enum
from datetime import datetime

from storage.database import Executor
from storage.sql import Statement

_RENEW = Statement("""
    UPDATE conversations SET reply_lease_until = :until WHERE chat_id = :chat_id AND reply_lease_owner = :worker
""")
# Handed back only if no message arrived since the worker looked (the count is the conversation
# row's own, so a store that commits first makes this write nothing).
_RELEASE_IF_IDLE = Statement("""
    WITH released AS (
        UPDATE conversations SET reply_lease_until = NULL, reply_lease_owner = NULL
         WHERE chat_id = :chat_id AND (reply_lease_owner = :worker OR reply_lease_owner IS NULL)
           AND user_messages = :seen_user_messages
        RETURNING chat_id
    )
    SELECT EXISTS (SELECT 1 FROM released) AS released,
           (SELECT reply_lease_owner FROM conversations WHERE chat_id = :chat_id) AS owner
""")
_TAKE = Statement("""
    UPDATE conversations SET reply_lease_until = :until, reply_lease_owner = :worker
     WHERE chat_id = :chat_id AND (reply_lease_until IS NULL OR reply_lease_until < :now)
    RETURNING chat_id
""")
# Driven from the small partial index of unanswered messages, not from every conversation.
_OWED = Statement("""
    SELECT c.chat_id FROM conversations AS c
     WHERE c.chat_id IN (SELECT m.chat_id FROM messages AS m WHERE m.role = 'user' AND m.answered_at IS NULL)
       AND c.active AND (c.reply_lease_until IS NULL OR c.reply_lease_until < :now)
       AND (c.held_for IS NULL OR c.held_until < :now)
     LIMIT :limit
""")
_RELEASE_ALL = Statement("""
    WITH released AS (
        UPDATE conversations SET reply_lease_until = NULL, reply_lease_owner = NULL
         WHERE reply_lease_owner = :worker RETURNING 1
    )
    SELECT count(*) FROM released
""")


class Idle(enum.Enum):
    RELEASED = "released"  # nothing more was owed: the lease is handed back
    MORE_OWED = "more owed"  # a message arrived meanwhile: keep answering
    TAKEN_OVER = "taken over"  # another worker holds the lease now


class LeaseRepo:
    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def renew(self, chat_id: int, worker: str, until: datetime) -> None:
        await self.executor.execute(_RENEW, chat_id=chat_id, worker=worker, until=until)

    async def release_if_idle(self, chat_id: int, worker: str, seen_user_messages: int) -> Idle:
        row = await self.executor.fetchrow(
            _RELEASE_IF_IDLE, chat_id=chat_id, worker=worker, seen_user_messages=seen_user_messages
        )
        assert row is not None
        if row["released"]:
            return Idle.RELEASED
        if row["owner"] not in (None, worker):
            return Idle.TAKEN_OVER
        return Idle.MORE_OWED

    async def take(self, chat_id: int, worker: str, until: datetime, now: datetime) -> bool:
        """Become the chat's responder unless a live one exists."""
        return await self.executor.fetchval(_TAKE, chat_id=chat_id, worker=worker, until=until, now=now) is not None

    async def owed(self, now: datetime, limit: int) -> list[int]:
        """Chats with an unanswered user message and no live responder: what a crashed worker left,
        and chats whose hold (a limit) has ended."""
        return [row["chat_id"] for row in await self.executor.fetch(_OWED, now=now, limit=limit)]

    async def release_all(self, worker: str) -> int:
        """Hand back every lease of a worker that is stopping, so another takes the chats at once."""
        return int(await self.executor.fetchval(_RELEASE_ALL, worker=worker))
