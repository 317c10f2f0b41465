"""The outbox: every message to Telegram, queued in order per chat, claimed by one sender at a time.

Only the oldest pending row of a chat (its head) can be claimed, so a chat's messages go out
in the order they were queued, whichever process sends them: a later message waits until the
earlier one is sent or given up. A reply queued when nothing else of its chat is pending is
queued claimed (it is the head), which saves its sender the claim's round trip; a row another
transaction queues for the chat at that very moment (a command's answer, a check-in) is not
seen by that check and may go out beside the reply, in either order, never twice. A claim is a
short lease; a sender that dies simply lets it run out. A row is deleted once Telegram has
accepted it, in the same statement that records the delivery on the message it carries.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import BigInteger, Boolean, DateTime, Integer, Interval, Text, bindparam, insert
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from storage.models import Outbox, table_of

_OUTBOX = table_of(Outbox)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One Bot API call to make: `sendMessage`, `editMessageText` or `sendDocument`, and its parameters."""

    method: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ClaimAs:
    """Who claims a send, and for how long: a sender's identity, for rows queued already claimed."""

    worker: str
    lease: timedelta


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


_ROW_TYPES: dict[str, Any] = {
    "id": BigInteger,
    "chat_id": BigInteger,
    "message_id": BigInteger,
    "last_piece": Boolean,
    "method": Text,
    "payload": JSONB,
    "attempts": Integer,
    "created_at": DateTime(timezone=True),
}
_ENQUEUE = insert(_OUTBOX)
_CLAIM = (
    sql("""
    UPDATE outbox AS o
       SET claimed_by = :worker, claimed_until = now() + :lease, attempts = o.attempts + 1
      FROM (SELECT id FROM outbox WHERE chat_id = :chat_id AND status = 'pending'
             ORDER BY id LIMIT 1 FOR UPDATE) AS head
     WHERE o.id = head.id
       AND o.next_attempt_at <= now()
       AND (o.claimed_until IS NULL OR o.claimed_until < now())
    RETURNING o.id, o.chat_id, o.message_id, o.last_piece, o.method, o.payload, o.attempts, o.created_at
""")
    .bindparams(bindparam("lease", type_=Interval))
    .columns(**_ROW_TYPES)
)
_SENT = sql("""
    WITH sent AS (DELETE FROM outbox WHERE id = :id RETURNING message_id, last_piece)
    UPDATE messages SET delivered_at = now(), telegram_message_id = :telegram_message_id
     WHERE id = (SELECT message_id FROM sent WHERE last_piece)
""").bindparams(bindparam("telegram_message_id", type_=BigInteger))
_RETRY = sql("""
    UPDATE outbox SET claimed_by = NULL, claimed_until = NULL, next_attempt_at = now() + :delay, last_error = :error
     WHERE id = :id AND status = 'pending'
""").bindparams(bindparam("delay", type_=Interval))
_GIVE_UP = sql("""
    UPDATE outbox SET status = 'failed', claimed_by = NULL, claimed_until = NULL, last_error = :error,
                      finished_at = now()
     WHERE id = :id AND status = 'pending'
""")
_GIVE_UP_CHAT = sql("""
    UPDATE outbox SET status = 'failed', claimed_by = NULL, claimed_until = NULL, last_error = :error,
                      finished_at = now()
     WHERE chat_id = :chat_id AND status = 'pending'
""")
# Chats whose head is due and free: what the periodic sweep hands to senders.
_DUE_CHATS = sql("""
    SELECT o.chat_id FROM outbox AS o
     WHERE o.status = 'pending' AND o.next_attempt_at <= now()
       AND (o.claimed_until IS NULL OR o.claimed_until < now())
       AND NOT EXISTS (SELECT 1 FROM outbox AS p WHERE p.status = 'pending' AND p.chat_id = o.chat_id AND p.id < o.id)
     ORDER BY o.id
     LIMIT :limit
""").columns(chat_id=BigInteger)
_RELEASE = sql("""
    UPDATE outbox SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = :worker AND status = 'pending'
""")


_CLAIM_RAW = """
    UPDATE outbox AS o
       SET claimed_by = $2, claimed_until = now() + $3::interval, attempts = o.attempts + 1
      FROM (SELECT id FROM outbox WHERE chat_id = $1 AND status = 'pending'
             ORDER BY id LIMIT 1 FOR UPDATE) AS head
     WHERE o.id = head.id
       AND o.next_attempt_at <= now()
       AND (o.claimed_until IS NULL OR o.claimed_until < now())
    RETURNING o.id, o.chat_id, o.message_id, o.last_piece, o.method, o.payload, o.attempts, o.created_at
"""
# Deliveries recorded together ($1 send ids, $2 their Telegram message ids, in the same order).
_SENT_MANY = """
    WITH delivered AS (
        SELECT * FROM unnest($1::bigint[], $2::bigint[]) AS d(send_id, telegram_message_id)
    ), sent AS (
        DELETE FROM outbox AS o USING delivered AS d WHERE o.id = d.send_id
        RETURNING o.message_id, o.last_piece, d.telegram_message_id
    )
    UPDATE messages AS m SET delivered_at = now(), telegram_message_id = sent.telegram_message_id
      FROM sent WHERE m.id = sent.message_id AND sent.last_piece
"""


class SenderRepo:
    """The senders' two statements, claim and record, straight through asyncpg (each commits by
    itself): the path every message takes."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection

    async def claim_head(self, chat_id: int, worker: str, lease: timedelta) -> QueuedSend | None:
        row = await self.connection.fetchrow(_CLAIM_RAW, chat_id, worker, lease)
        if row is None:
            return None
        payload = row["payload"]
        return QueuedSend(
            row["id"],
            row["chat_id"],
            row["message_id"],
            row["last_piece"],
            row["method"],
            json.loads(payload) if isinstance(payload, str) else payload,
            row["attempts"],
            row["created_at"],
        )

    async def sent(self, deliveries: Sequence[tuple[int, int | None]]) -> None:
        """Telegram accepted these (send id, its message id): drop the rows, record each delivery."""
        await self.connection.execute(_SENT_MANY, [d[0] for d in deliveries], [d[1] for d in deliveries])


class OutboxRepo:
    """On a session (queueing beside other writes) or on a connection a sender holds from claim to record."""

    def __init__(self, session: AsyncSession | AsyncConnection) -> None:
        self.session = session

    async def enqueue(self, chat_id: int, sends: Sequence[Outgoing], *, message_id: int | None = None) -> None:
        """Queue `sends` for a chat, in order; the last one completes `message_id`."""
        if not sends:
            return
        rows = [
            {
                "chat_id": chat_id,
                "message_id": message_id,
                "last_piece": index == len(sends) - 1,
                "method": send.method,
                "payload": send.payload,
            }
            for index, send in enumerate(sends)
        ]
        await self.session.execute(_ENQUEUE, rows)

    async def claim_head(self, chat_id: int, worker: str, lease: timedelta) -> QueuedSend | None:
        """The chat's oldest pending send, if it is due and nobody else is sending it."""
        row = (await self.session.execute(_CLAIM, {"chat_id": chat_id, "worker": worker, "lease": lease})).first()
        return QueuedSend(*row) if row else None

    async def sent(self, send_id: int, telegram_message_id: int | None) -> None:
        """Telegram accepted it: drop the row and record the delivery on its message."""
        await self.session.execute(_SENT, {"id": send_id, "telegram_message_id": telegram_message_id})

    async def retry_later(self, send_id: int, delay: timedelta, error: str) -> None:
        await self.session.execute(_RETRY, {"id": send_id, "delay": delay, "error": error[:1000]})

    async def give_up(self, send_id: int, error: str) -> None:
        await self.session.execute(_GIVE_UP, {"id": send_id, "error": error[:1000]})

    async def give_up_chat(self, chat_id: int, error: str) -> None:
        """Everything still queued for a chat that cannot be written to (the user blocked the bot)."""
        await self.session.execute(_GIVE_UP_CHAT, {"chat_id": chat_id, "error": error[:1000]})

    async def due_chats(self, limit: int) -> list[int]:
        return list((await self.session.scalars(_DUE_CHATS, {"limit": limit})).all())

    async def release(self, worker: str) -> int:
        """Hand back every claim of a worker that is stopping, so another sends at once."""
        result = await self.session.execute(_RELEASE, {"worker": worker})
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
