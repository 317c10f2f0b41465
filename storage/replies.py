"""Storing the friend's reply, in one statement: the message, what it answers, the count, the
tokens it cost the user today, its outbox rows and, if no message arrived since the context was
read, the reply lease handed back; a hold on the chat (a limit that passed) is lifted.
It is written only while the worker still holds the chat's lease (or nobody does).

With nothing of the chat waiting ahead, the reply's first send is the chat's head: it is queued
already claimed by the sender that will send it (`claim_as`), which saves that sender the claim
of its own. A send queued by another transaction at that very instant is not seen by this check
and may go out beside the reply, in either order, never twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from storage.database import Executor
from storage.outbox import QueuedSend
from storage.sql import Statement, read_row, values_of

_STORE_REPLY = Statement("""
    WITH conv AS (
        UPDATE conversations
           SET bot_messages = bot_messages + 1, last_bot_message_at = now(), updated_at = now(),
               reply_lease_until = CASE WHEN user_messages = :seen_user_messages THEN NULL
                                        ELSE CAST(:lease_until AS timestamptz) END,
               reply_lease_owner = CASE WHEN user_messages = :seen_user_messages THEN NULL ELSE reply_lease_owner END,
               held_for = NULL, held_until = NULL
         WHERE chat_id = :chat_id AND (reply_lease_owner = :worker OR reply_lease_owner IS NULL)
        RETURNING chat_id, user_id, reply_lease_owner IS NULL AS released
    ), used AS (
        INSERT INTO usage_days (user_id, day, tokens, replies)
        SELECT u.id, (now() AT TIME ZONE coalesce(u.timezone, CAST(:default_tz AS text)))::date, :tokens, 1
          FROM conv JOIN users AS u ON u.id = conv.user_id
        ON CONFLICT (user_id, day) DO UPDATE
           SET tokens = usage_days.tokens + EXCLUDED.tokens, replies = usage_days.replies + 1
    ), admitted AS (
        UPDATE users SET admitted_at = now() WHERE id = (SELECT user_id FROM conv) AND admitted_at IS NULL
    ), stored AS (
        INSERT INTO messages (chat_id, role, kind, text) SELECT chat_id, 'assistant', :kind, :text FROM conv
        RETURNING id
    ), answered AS (
        UPDATE messages SET answered_at = now(),
                            recall_note = CASE WHEN id = :through_id THEN CAST(:recall_note AS text) END
         WHERE chat_id = :chat_id AND role = 'user' AND answered_at IS NULL AND id <= :through_id
           AND EXISTS (SELECT 1 FROM conv)
    ), ahead AS (
        SELECT count(*) AS sends FROM outbox WHERE chat_id = :chat_id AND status = 'pending'
    ), queued AS (
        INSERT INTO outbox (chat_id, message_id, last_piece, method, payload, claimed_by, claimed_until, attempts)
        SELECT :chat_id, stored.id, s.piece = jsonb_array_length(CAST(:sends AS jsonb)), s.method, s.payload,
               CASE WHEN c.head THEN CAST(:claim_as AS text) END,
               CASE WHEN c.head THEN now() + CAST(:claim_lease AS interval) END,
               CASE WHEN c.head THEN 1 ELSE 0 END
          FROM stored, jsonb_to_recordset(CAST(:sends AS jsonb)) AS s(piece integer, method text, payload jsonb),
               LATERAL (SELECT s.piece = 1 AND CAST(:claim_as AS text) IS NOT NULL
                               AND (SELECT sends FROM ahead) = 0 AS head) AS c
         ORDER BY s.piece
        RETURNING id, message_id, last_piece, method, payload, attempts, created_at, claimed_by IS NOT NULL AS claimed
    )
    SELECT (SELECT id FROM stored) AS message_id, coalesce((SELECT released FROM conv), false) AS released,
           (SELECT sends FROM ahead) AS queued_before,
           (SELECT row_to_json(q) FROM queued AS q WHERE q.claimed) AS claimed
""")


@dataclass(frozen=True, slots=True)
class StoredReply:
    message_id: int
    released: bool  # the lease was handed back: nothing arrived since the context was read
    queued_before: int  # sends of the chat already waiting ahead of this reply
    claimed: QueuedSend | None = None  # its first send, queued claimed by `claim_as`: send it without a claim


@dataclass(frozen=True, slots=True)
class LeaseLost:
    """Another worker writes this chat's replies now: the reply was not stored."""


@dataclass(frozen=True, slots=True)
class ReplyWrite:
    chat_id: int
    worker: str
    kind: str
    text: str
    through_id: int  # the newest message it answers
    seen_user_messages: int  # the count when the context was read: unchanged, the lease is handed back
    lease_until: datetime
    sends: tuple[tuple[str, dict[str, Any]], ...]  # (Bot API method, parameters) in order
    recall_note: str | None = None
    tokens: int = 0  # model tokens the reply cost (prompt and text), counted against the user's day
    default_tz: str = "UTC"  # the zone of users who set none: whose day the tokens count in
    claim_as: str | None = None  # the sender that will send it, if it may take the head queued claimed
    claim_lease: timedelta = timedelta(seconds=20)


class ReplyRepo:
    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def store_reply(self, write: ReplyWrite) -> StoredReply | LeaseLost:
        sends = [
            {"piece": n, "method": method, "payload": payload} for n, (method, payload) in enumerate(write.sends, 1)
        ]
        row = await self.executor.fetchrow(_STORE_REPLY, **{**values_of(write), "sends": sends})
        assert row is not None
        if row["message_id"] is None:
            return LeaseLost()
        claimed = row["claimed"]
        if claimed is not None:
            created_at = datetime.fromisoformat(claimed["created_at"])
            claimed = read_row(QueuedSend, {**claimed, "chat_id": write.chat_id, "created_at": created_at})
        return StoredReply(row["message_id"], row["released"], int(row["queued_before"]), claimed)
