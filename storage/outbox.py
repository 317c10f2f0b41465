"""The outbox: every message to Telegram, queued in order per chat, claimed by one sender at a time.

Only the oldest pending row of a chat (its head) can be claimed, so a chat's messages go out
in the order they were queued, whichever process sends them: a later message waits until the
earlier one is sent or given up. A claim is a short lease; a sender that dies lets it run out.
A row is deleted once Telegram has accepted it, in the same statement that records the
delivery on the message it carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from storage.database import Executor
from storage.sql import Statement, read_row


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One Bot API call to make: `sendMessage`, `editMessageText` or `sendDocument`, and its parameters."""

    method: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class QueuedSend:
    id: int
    chat_id: int
    message_id: int | None
    last_piece: bool
    method: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime


_ENQUEUE = Statement("""
    INSERT INTO outbox (chat_id, message_id, last_piece, method, payload)
    SELECT :chat_id, CAST(:message_id AS bigint), s.n = jsonb_array_length(CAST(:sends AS jsonb)), s.method, s.payload
      FROM ROWS FROM (jsonb_to_recordset(CAST(:sends AS jsonb)) AS (method text, payload jsonb))
           WITH ORDINALITY AS s(method, payload, n)
     ORDER BY s.n
""")
_CLAIM = Statement("""
    UPDATE outbox AS o
       SET claimed_by = :worker, claimed_until = now() + CAST(:lease AS interval), attempts = o.attempts + 1
      FROM (SELECT id FROM outbox WHERE chat_id = :chat_id AND status = 'pending'
             ORDER BY id LIMIT 1 FOR UPDATE) AS head
     WHERE o.id = head.id
       AND o.next_attempt_at <= now()
       AND (o.claimed_until IS NULL OR o.claimed_until < now())
    RETURNING o.id, o.chat_id, o.message_id, o.last_piece, o.method, o.payload, o.attempts, o.created_at
""")
_KEEP = Statement("""
    UPDATE outbox SET claimed_until = now() + CAST(:lease AS interval)
     WHERE id = :send_id AND status = 'pending' AND claimed_by = :worker AND claimed_until > now()
    RETURNING id
""")
_SENT = Statement("""
    WITH sent AS (DELETE FROM outbox WHERE id = :send_id RETURNING message_id, last_piece)
    UPDATE messages SET delivered_at = now(), telegram_message_id = CAST(:telegram_message_id AS bigint)
     WHERE id = (SELECT message_id FROM sent WHERE last_piece)
""")
_RETRY = Statement("""
    UPDATE outbox SET claimed_by = NULL, claimed_until = NULL, next_attempt_at = now() + CAST(:delay AS interval),
                      last_error = :error
     WHERE id = :send_id AND status = 'pending'
""")
_GIVE_UP = Statement("""
    UPDATE outbox SET status = 'failed', claimed_by = NULL, claimed_until = NULL, last_error = :error,
                      finished_at = now()
     WHERE id = :send_id AND status = 'pending'
""")
_GIVE_UP_CHAT = Statement("""
    UPDATE outbox SET status = 'failed', claimed_by = NULL, claimed_until = NULL, last_error = :error,
                      finished_at = now()
     WHERE chat_id = :chat_id AND status = 'pending'
""")
# Chats whose head is due and free: what the periodic sweep hands to senders.
_DUE_CHATS = Statement("""
    SELECT o.chat_id FROM outbox AS o
     WHERE o.status = 'pending' AND o.next_attempt_at <= now()
       AND (o.claimed_until IS NULL OR o.claimed_until < now())
       AND NOT EXISTS (SELECT 1 FROM outbox AS p WHERE p.status = 'pending' AND p.chat_id = o.chat_id AND p.id < o.id)
     ORDER BY o.id
     LIMIT :limit
""")
_RELEASE = Statement("""
    WITH released AS (
        UPDATE outbox SET claimed_by = NULL, claimed_until = NULL
         WHERE claimed_by = :worker AND status = 'pending' RETURNING 1
    )
    SELECT count(*) FROM released
""")
_PENDING = Statement("SELECT count(*) FROM outbox WHERE status = 'pending'")


class OutboxRepo:
    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def enqueue(self, chat_id: int, sends: Sequence[Outgoing], *, message_id: int | None = None) -> None:
        """Queue `sends` for a chat, in order; the last one completes `message_id`."""
        if sends:
            rows = [{"method": send.method, "payload": send.payload} for send in sends]
            await self.executor.execute(_ENQUEUE, chat_id=chat_id, message_id=message_id, sends=rows)

    async def claim_head(self, chat_id: int, worker: str, lease: timedelta) -> QueuedSend | None:
        """The chat's oldest pending send, if it is due and nobody else is sending it."""
        row = await self.executor.fetchrow(_CLAIM, chat_id=chat_id, worker=worker, lease=lease)
        return read_row(QueuedSend, row) if row is not None else None

    async def keep_claim(self, send_id: int, worker: str, lease: timedelta) -> bool:
        """Extend a claim that is still the worker's (it has not run out: nobody else can have taken
        it); False if it ran out, or the send is gone."""
        return await self.executor.fetchval(_KEEP, send_id=send_id, worker=worker, lease=lease) is not None

    async def sent(self, send_id: int, telegram_message_id: int | None) -> None:
        """Telegram accepted it: drop the row and record the delivery on its message."""
        await self.executor.execute(_SENT, send_id=send_id, telegram_message_id=telegram_message_id)

    async def retry_later(self, send_id: int, delay: timedelta, error: str) -> None:
        await self.executor.execute(_RETRY, send_id=send_id, delay=delay, error=error[:1000])

    async def give_up(self, send_id: int, error: str) -> None:
        await self.executor.execute(_GIVE_UP, send_id=send_id, error=error[:1000])

    async def give_up_chat(self, chat_id: int, error: str) -> None:
        """Everything still queued for a chat that cannot be written to (the user blocked the bot)."""
        await self.executor.execute(_GIVE_UP_CHAT, chat_id=chat_id, error=error[:1000])

    async def due_chats(self, limit: int) -> list[int]:
        return [row["chat_id"] for row in await self.executor.fetch(_DUE_CHATS, limit=limit)]

    async def release(self, worker: str) -> int:
        """Hand back every claim of a worker that is stopping, so another sends at once."""
        return int(await self.executor.fetchval(_RELEASE, worker=worker))

    async def pending(self) -> int:
        return int(await self.executor.fetchval(_PENDING))
