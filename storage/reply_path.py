"""The reply path in as few round trips as PostgreSQL allows: one statement per step, no BEGIN/COMMIT.

Each statement is atomic on its own (data-modifying CTEs), run on an AUTOCOMMIT connection:

1. `read`: the conversation, its user, what is owed a reply, the recent history and the day
   summaries, in one statement (the history rides along as JSON).
2. `store_message`: record the update id, store the message, move the conversation (FSM,
   counters, reply lease) and log transitions, guarded by the values `read` saw. If anything
   else changed the conversation meanwhile (another message, a command, a lease), nothing is
   written and the caller reads again: optimistic, instead of a row lock held across round trips.
3. `store_reply`: store the reply, mark what it answers, count it, queue it in the outbox and,
   if no message arrived since the context was read, hand the reply lease back.

The outbox rows are then sent and recorded by the delivery queue (two statements).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, Float, Integer, Text, bindparam
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.conversations import TransitionRecord, vars_of
from storage.dto import ConversationRow, DailySummaryRow, MessageRow
from storage.outbox import Outgoing

_MESSAGE_JSON = (
    "json_build_array(m.id, m.chat_id, m.role, m.kind, m.text, m.created_at, m.telegram_message_id, "
    "m.answered_at, m.delivered_at, m.sentiment_negative, m.sentiment_positive)"
)
_CONVERSATION_COLUMNS = [name for name in ConversationRow.__slots__ if name not in ("timezone", "username",
                                                                                   "first_name")]
_READ = sql(f"""
    SELECT {", ".join(f"c.{name}" for name in _CONVERSATION_COLUMNS)}, u.timezone, u.username, u.first_name,
           (SELECT coalesce(json_agg({_MESSAGE_JSON} ORDER BY m.id), '[]')
              FROM messages AS m
             WHERE m.chat_id = c.chat_id AND m.role = 'user' AND m.answered_at IS NULL) AS pending,
           (SELECT coalesce(json_agg({_MESSAGE_JSON} ORDER BY m.id), '[]')
              FROM (SELECT * FROM messages AS r
                     WHERE r.chat_id = c.chat_id AND r.id > greatest(c.history_since_id, c.summarized_through_id)
                     ORDER BY r.id DESC LIMIT :window) AS m) AS recent,
           (SELECT coalesce(json_agg(json_build_array(d.day, d.text) ORDER BY d.day), '[]')
              FROM (SELECT s.day, s.text FROM daily_summaries AS s
                     WHERE s.chat_id = c.chat_id
                       AND s.day < (now() AT TIME ZONE coalesce(u.timezone, :default_tz))::date
                     ORDER BY s.day DESC LIMIT :days) AS d) AS days
      FROM conversations AS c JOIN users AS u ON u.id = c.user_id
     WHERE c.chat_id = :chat_id
""")

_STORE_MESSAGE = sql("""
    WITH conv AS (
        UPDATE conversations
           SET state = :state, stage_before_repair = :stage_before_repair, stage_messages = :stage_messages,
               calm_streak = :calm_streak, user_messages = user_messages + 1, last_user_message_at = :now,
               checkins_unanswered = 0, active = true, next_checkin_at = :next_checkin_at,
               reply_lease_until = :lease_until, reply_lease_owner = :lease_owner, updated_at = now()
         WHERE chat_id = :chat_id
           AND state = :seen_state AND stage_before_repair IS NOT DISTINCT FROM :seen_stage_before_repair
           AND stage_messages = :seen_stage_messages AND calm_streak = :seen_calm_streak
           AND user_messages = :seen_user_messages AND checkins_enabled = :seen_checkins_enabled
           AND reply_lease_until IS NOT DISTINCT FROM :seen_lease_until
           AND reply_lease_owner IS NOT DISTINCT FROM :seen_lease_owner
           AND NOT EXISTS (SELECT 1 FROM processed_updates WHERE update_id = :update_id)
           AND NOT EXISTS (SELECT 1 FROM messages
                            WHERE chat_id = :chat_id AND role = 'user' AND telegram_message_id = :telegram_message_id)
        RETURNING chat_id
    ), seen AS (
        INSERT INTO processed_updates (update_id, chat_id)
        SELECT :update_id, chat_id FROM conv WHERE :update_id IS NOT NULL
        ON CONFLICT DO NOTHING
    ), stored AS (
        INSERT INTO messages (chat_id, role, kind, text, telegram_message_id, update_id,
                              sentiment_negative, sentiment_positive)
        SELECT chat_id, 'user', 'text', :text, :telegram_message_id, :update_id, :negative, :positive FROM conv
        RETURNING id, created_at
    ), moved AS (
        INSERT INTO state_transitions (chat_id, from_state, to_state, trigger, user_messages,
                                       sentiment_negative, sentiment_positive, message_id)
        SELECT :chat_id, t.from_state, t.to_state, t.trigger, t.user_messages, t.sentiment_negative,
               t.sentiment_positive, stored.id
          FROM stored, jsonb_to_recordset(:transitions) AS t(from_state text, to_state text, trigger text,
               user_messages integer, sentiment_negative double precision, sentiment_positive double precision)
    )
    SELECT (SELECT id FROM stored) AS message_id, (SELECT created_at FROM stored) AS created_at,
           EXISTS (SELECT 1 FROM processed_updates WHERE update_id = :update_id) AS update_seen,
           EXISTS (SELECT 1 FROM messages WHERE chat_id = :chat_id AND role = 'user'
                                            AND telegram_message_id = :telegram_message_id) AS message_seen
""").bindparams(
    bindparam("transitions", type_=JSONB), bindparam("update_id", type_=BigInteger),
    bindparam("telegram_message_id", type_=BigInteger), bindparam("now", type_=DateTime(timezone=True)),
    bindparam("next_checkin_at", type_=DateTime(timezone=True)),
    bindparam("lease_until", type_=DateTime(timezone=True)), bindparam("lease_owner", type_=Text),
    bindparam("seen_lease_until", type_=DateTime(timezone=True)), bindparam("seen_lease_owner", type_=Text),
    bindparam("stage_before_repair", type_=Text), bindparam("seen_stage_before_repair", type_=Text),
    bindparam("negative", type_=Float), bindparam("positive", type_=Float),
).columns(message_id=BigInteger, created_at=DateTime(timezone=True), update_seen=Boolean, message_seen=Boolean)

_STORE_REPLY = sql("""
    WITH conv AS (
        UPDATE conversations
           SET bot_messages = bot_messages + 1, last_bot_message_at = now(), updated_at = now(),
               reply_lease_until = CASE WHEN user_messages = :seen_user_messages THEN NULL ELSE :lease_until END,
               reply_lease_owner = CASE WHEN user_messages = :seen_user_messages THEN NULL ELSE reply_lease_owner END
         WHERE chat_id = :chat_id AND (reply_lease_owner = :worker OR reply_lease_owner IS NULL)
        RETURNING chat_id, reply_lease_owner IS NULL AS released
    ), stored AS (
        INSERT INTO messages (chat_id, role, kind, text) SELECT chat_id, 'assistant', :kind, :text FROM conv
        RETURNING id
    ), answered AS (
        UPDATE messages SET answered_at = now()
         WHERE chat_id = :chat_id AND role = 'user' AND answered_at IS NULL AND id <= :through_id
           AND EXISTS (SELECT 1 FROM conv)
    ), queued AS (
        INSERT INTO outbox (chat_id, message_id, last_piece, method, payload)
        SELECT :chat_id, stored.id, s.piece = :pieces, s.method, s.payload
          FROM stored, jsonb_to_recordset(:sends) AS s(piece integer, method text, payload jsonb)
         ORDER BY s.piece
    )
    SELECT (SELECT id FROM stored) AS message_id, coalesce((SELECT released FROM conv), false) AS released,
           (SELECT count(*) FROM outbox WHERE chat_id = :chat_id AND status = 'pending') AS queued_before
""").bindparams(
    bindparam("sends", type_=JSONB), bindparam("lease_until", type_=DateTime(timezone=True)),
).columns(message_id=BigInteger, released=Boolean, queued_before=Integer)


@dataclass(frozen=True, slots=True)
class ChatState:
    """Everything a message and its reply need, read at once."""

    conversation: ConversationRow
    pending: list[MessageRow]
    recent: list[MessageRow]
    days: list[DailySummaryRow]


@dataclass(frozen=True, slots=True)
class StoredMessage:
    message_id: int | None  # None: nothing was written
    created_at: datetime | None
    duplicate: bool  # the update or the Telegram message was stored before


@dataclass(frozen=True, slots=True)
class StoredReply:
    message_id: int | None  # None: another worker holds the chat's lease now
    released: bool  # the lease was handed back: nothing arrived since the context was read
    queued_before: int  # sends of the chat that were already waiting ahead of this reply


def _messages(raw: Any) -> list[MessageRow]:
    rows = json.loads(raw) if isinstance(raw, str) else raw
    return [
        MessageRow(m[0], m[1], m[2], m[3], m[4], datetime.fromisoformat(m[5]), m[6],
                   datetime.fromisoformat(m[7]) if m[7] else None, datetime.fromisoformat(m[8]) if m[8] else None,
                   m[9], m[10])
        for m in rows
    ]


class ReplyPathRepo:
    """The three statements of the reply path, on a connection in AUTOCOMMIT mode."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def read(self, chat_id: int, *, default_tz: str, window: int, days: int = 3) -> ChatState | None:
        row = (await self.connection.execute(
            _READ, {"chat_id": chat_id, "default_tz": default_tz, "window": window, "days": days}
        )).first()
        if row is None:
            return None
        fields = row._mapping
        conversation = ConversationRow(**{name: fields[name] for name in ConversationRow.__slots__})
        day_rows = json.loads(fields["days"]) if isinstance(fields["days"], str) else fields["days"]
        return ChatState(
            conversation,
            _messages(fields["pending"]),
            _messages(fields["recent"]),
            [DailySummaryRow(date.fromisoformat(day), text) for day, text in day_rows],
        )

    async def store_message(
        self,
        seen: ConversationRow,
        *,
        text: str,
        telegram_message_id: int | None,
        update_id: int | None,
        negative: float | None,
        positive: float | None,
        moved_to: dict[str, Any],
        now: datetime,
        next_checkin_at: datetime | None,
        lease_until: datetime | None,
        lease_owner: str | None,
        transitions: Sequence[TransitionRecord],
    ) -> StoredMessage:
        params = {
            "chat_id": seen.chat_id, "text": text, "telegram_message_id": telegram_message_id,
            "update_id": update_id, "negative": negative, "positive": positive, "now": now,
            "next_checkin_at": next_checkin_at, "lease_until": lease_until, "lease_owner": lease_owner,
            "transitions": [vars_of(t) for t in transitions], **moved_to,
            "seen_state": seen.state, "seen_stage_before_repair": seen.stage_before_repair,
            "seen_stage_messages": seen.stage_messages, "seen_calm_streak": seen.calm_streak,
            "seen_user_messages": seen.user_messages, "seen_checkins_enabled": seen.checkins_enabled,
            "seen_lease_until": seen.reply_lease_until, "seen_lease_owner": seen.reply_lease_owner,
        }
        row = (await self.connection.execute(_STORE_MESSAGE, params)).one()
        if row.message_id is not None:
            return StoredMessage(row.message_id, row.created_at, duplicate=False)
        return StoredMessage(None, None, duplicate=bool(row.update_seen or row.message_seen))

    async def store_reply(
        self, chat_id: int, *, worker: str, kind: str, text: str, through_id: int, seen_user_messages: int,
        lease_until: datetime, sends: Sequence[Outgoing],
    ) -> StoredReply:
        params = {
            "chat_id": chat_id, "worker": worker, "kind": kind, "text": text, "through_id": through_id,
            "seen_user_messages": seen_user_messages, "lease_until": lease_until, "pieces": len(sends),
            "sends": [{"piece": n, "method": s.method, "payload": s.payload} for n, s in enumerate(sends, 1)],
        }
        row = (await self.connection.execute(_STORE_REPLY, params)).one()
        return StoredReply(row.message_id, bool(row.released), int(row.queued_before or 0))
