"""The reply path in as few round trips as PostgreSQL allows: one statement per step, no BEGIN/COMMIT.

Each statement is atomic on its own (data-modifying CTEs), sent straight through asyncpg with no
transaction around it (SQLAlchemy's execution layer cost more CPU than these statements do):

1. `read`: the conversation, its user, what is owed a reply, the recent history, the day
   summaries and the older lines that match the new message (full-text search, GIN index),
   in one statement (the rows ride along as JSON); `read_many` reads several chats in one.
2. `store_message`: record the update id, store the message, move the conversation (FSM,
   counters, reply lease) and log transitions, guarded by the values `read` saw. If anything
   else changed the conversation meanwhile (another message, a command, a lease, a /clear), nothing
   is written and the caller reads again: optimistic, instead of a row lock held across round trips.
3. `store_reply`: store the reply, mark what it answers, count it, queue it in the outbox and,
   if no message arrived since the context was read, hand the reply lease back. With nothing of
   the chat queued ahead, its first piece is queued already claimed by the sender.

The outbox rows are then sent and recorded by the delivery queue (one statement per piece, the
record of its delivery; a piece not claimed in advance takes one more, its claim).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from storage.conversations import TransitionRecord, UserInfo, vars_of
from storage.dto import ConversationRow, DailySummaryRow, MessageRow, RecalledRow
from storage.outbox import ClaimAs, Outgoing, QueuedSend

_MESSAGE_JSON = (
    "json_build_array(m.id, m.chat_id, m.role, m.kind, m.text, m.created_at, m.telegram_message_id, "
    "m.answered_at, m.delivered_at, m.sentiment_negative, m.sentiment_positive, m.recall_note)"
)
_CONVERSATION_COLUMNS = [
    name for name in ConversationRow.__slots__ if name not in ("timezone", "username", "first_name")
]
# Many chats at once ($1 chat ids, $5 what recall looks for, $6 how many lines it may find; one
# each, in the same order): each chat's row is the single-chat statement, kept per chat by the
# LATERAL with OFFSET 0 (never flattened into a join that would scan every conversation).
_READ = f"""
    SELECT q.n, r.*
      FROM unnest($1::bigint[], $5::text[], $6::integer[]) WITH ORDINALITY AS q(chat_id, query, recall, n),
           LATERAL (
    SELECT {", ".join(f"c.{name}" for name in _CONVERSATION_COLUMNS)}, u.timezone, u.username, u.first_name,
           (SELECT coalesce(json_agg({_MESSAGE_JSON} ORDER BY m.id), '[]')
              FROM messages AS m
             WHERE m.chat_id = c.chat_id AND m.role = 'user' AND m.answered_at IS NULL) AS pending,
           (SELECT coalesce(json_agg({_MESSAGE_JSON} ORDER BY m.id), '[]')
              FROM (SELECT * FROM messages AS r
                     WHERE r.chat_id = c.chat_id AND r.id > greatest(c.history_since_id, c.summarized_through_id)
                       AND r.recallable
                     ORDER BY r.id DESC LIMIT $3) AS m) AS recent,
           (SELECT coalesce(json_agg(json_build_array(d.day, d.text) ORDER BY d.day), '[]')
              FROM (SELECT s.day, s.text FROM daily_summaries AS s
                     WHERE s.chat_id = c.chat_id
                       AND s.day < (now() AT TIME ZONE coalesce(u.timezone, $2))::date
                     ORDER BY s.day DESC LIMIT $4) AS d) AS days,
           (SELECT coalesce(json_agg(json_build_array(h.id, h.text, h.created_at) ORDER BY h.rank), '[]')
              FROM aifriend_recall(
                       c.chat_id, aifriend_text_config(u.language_code),
                       coalesce(q.query, (SELECT string_agg(p.text, ' ') FROM messages AS p
                                          WHERE p.chat_id = c.chat_id AND p.role = 'user'
                                            AND p.answered_at IS NULL)),
                       c.history_since_id,
                       coalesce((SELECT min(w.id) FROM (SELECT r.id FROM messages AS r
                                  WHERE r.chat_id = c.chat_id AND r.recallable
                                    AND r.id > greatest(c.history_since_id, c.summarized_through_id)
                                  ORDER BY r.id DESC LIMIT $3) AS w), 9223372036854775807),
                       c.user_messages, q.recall) WITH ORDINALITY AS h(id, text, created_at, rank)
             WHERE q.recall > 0) AS recalled
      FROM conversations AS c JOIN users AS u ON u.id = c.user_id
     WHERE c.chat_id = q.chat_id
    OFFSET 0) AS r
"""

# Both ways of storing a user message end the same way once `conv` names the chat it went to
# ($1 chat, $2 text, $3 Telegram message id, $4 update id, $5/$6 sentiment): the update is marked
# seen and the message stored. `stored` is what their transitions refer to.
_SEEN_AND_STORED = """
    seen AS (
        INSERT INTO processed_updates (update_id, chat_id)
        SELECT $4::bigint, chat_id FROM conv WHERE $4::bigint IS NOT NULL
        ON CONFLICT DO NOTHING
    ), stored AS (
        INSERT INTO messages (chat_id, role, kind, text, telegram_message_id, update_id,
                              sentiment_negative, sentiment_positive)
        SELECT chat_id, 'user', 'text', $2, $3::bigint, $4::bigint, $5::float8, $6::float8 FROM conv
        RETURNING id, created_at
    )"""
_STORED_RESULT = """
    SELECT (SELECT id FROM stored) AS message_id, (SELECT created_at FROM stored) AS created_at,
           EXISTS (SELECT 1 FROM processed_updates WHERE update_id = $4::bigint) AS update_seen"""

_STORE_MESSAGE = f"""
    WITH conv AS (
        UPDATE conversations
           SET state = $12, stage_before_repair = $13::text, stage_messages = $14,
               calm_streak = $15, user_messages = user_messages + 1, last_user_message_at = $7,
               checkins_unanswered = 0, active = true, next_checkin_at = $8::timestamptz,
               reply_lease_until = $9::timestamptz, reply_lease_owner = $10::text, updated_at = now()
         WHERE chat_id = $1
           AND state = $16 AND stage_before_repair IS NOT DISTINCT FROM $17::text
           AND stage_messages = $18 AND calm_streak = $19
           AND user_messages = $20 AND checkins_enabled = $21
           AND reply_lease_until IS NOT DISTINCT FROM $22::timestamptz
           AND reply_lease_owner IS NOT DISTINCT FROM $23::text AND history_since_id = $24
           AND NOT EXISTS (SELECT 1 FROM processed_updates WHERE update_id = $4::bigint)
           AND NOT EXISTS (SELECT 1 FROM messages
                            WHERE chat_id = $1 AND role = 'user' AND telegram_message_id = $3::bigint)
        RETURNING chat_id
    ), {_SEEN_AND_STORED}, moved AS (
        INSERT INTO state_transitions (chat_id, from_state, to_state, trigger, user_messages,
                                       sentiment_negative, sentiment_positive, message_id)
        SELECT $1::bigint, t.from_state, t.to_state, t.trigger, t.user_messages, t.sentiment_negative,
               t.sentiment_positive, stored.id
          FROM stored, jsonb_to_recordset($11::jsonb) AS t(from_state text, to_state text, trigger text,
               user_messages integer, sentiment_negative double precision, sentiment_positive double precision)
    ){_STORED_RESULT},
           EXISTS (SELECT 1 FROM messages WHERE chat_id = $1 AND role = 'user'
                                            AND telegram_message_id = $3::bigint) AS message_seen
"""

# The same parameters as _STORE_MESSAGE up to $15; then the user ($16 id, $17 username,
# $18 first name, $19 language code). $11 also holds the `start` transition (by_message false).
_STORE_FIRST_MESSAGE = f"""
    WITH person AS (
        INSERT INTO users (id, username, first_name, language_code) VALUES ($16, $17::text, $18::text, $19::text)
        ON CONFLICT (id) DO UPDATE
           SET username = EXCLUDED.username, first_name = EXCLUDED.first_name,
               language_code = EXCLUDED.language_code, updated_at = now()
         WHERE users.username IS DISTINCT FROM EXCLUDED.username
            OR users.first_name IS DISTINCT FROM EXCLUDED.first_name
        RETURNING id
    ), conv AS (
        INSERT INTO conversations (chat_id, user_id, state, stage_before_repair, stage_messages, calm_streak,
                                   user_messages, last_user_message_at, next_checkin_at,
                                   reply_lease_until, reply_lease_owner)
        SELECT $1, $16, $12, $13::text, $14, $15, 1, $7, $8::timestamptz, $9::timestamptz, $10::text
         -- the user row first: the message's text search configuration is read from it
         WHERE (SELECT count(*) FROM person) >= 0
           AND NOT EXISTS (SELECT 1 FROM processed_updates WHERE update_id = $4::bigint)
        ON CONFLICT (chat_id) DO NOTHING
        RETURNING chat_id
    ), {_SEEN_AND_STORED}, moved AS (
        INSERT INTO state_transitions (chat_id, from_state, to_state, trigger, user_messages,
                                       sentiment_negative, sentiment_positive, message_id)
        SELECT $1::bigint, t.from_state, t.to_state, t.trigger, t.user_messages, t.sentiment_negative,
               t.sentiment_positive, CASE WHEN t.by_message THEN stored.id END
          FROM stored,
               ROWS FROM (jsonb_to_recordset($11::jsonb) AS (
                   from_state text, to_state text, trigger text, user_messages integer,
                   sentiment_negative double precision, sentiment_positive double precision, by_message boolean
               )) WITH ORDINALITY AS t(from_state, to_state, trigger, user_messages, sentiment_negative,
                                       sentiment_positive, by_message, n)
         ORDER BY t.n
    ){_STORED_RESULT}
"""

_STORE_REPLY = """
    WITH conv AS (
        UPDATE conversations
           SET bot_messages = bot_messages + 1, last_bot_message_at = now(), updated_at = now(),
               reply_lease_until = CASE WHEN user_messages = $6 THEN NULL ELSE $7::timestamptz END,
               reply_lease_owner = CASE WHEN user_messages = $6 THEN NULL ELSE reply_lease_owner END
         WHERE chat_id = $1 AND (reply_lease_owner = $2 OR reply_lease_owner IS NULL)
        RETURNING chat_id, reply_lease_owner IS NULL AS released
    ), stored AS (
        INSERT INTO messages (chat_id, role, kind, text) SELECT chat_id, 'assistant', $3, $4 FROM conv
        RETURNING id
    ), answered AS (
        UPDATE messages SET answered_at = now(), recall_note = CASE WHEN id = $5 THEN $10::text END
         WHERE chat_id = $1 AND role = 'user' AND answered_at IS NULL AND id <= $5
           AND EXISTS (SELECT 1 FROM conv)
    ), ahead AS (
        SELECT count(*) AS sends FROM outbox WHERE chat_id = $1 AND status = 'pending'
    ), queued AS (
        -- With nothing of the chat ahead, the first piece is queued already claimed by the sender
        -- $11 (for $12): the claim it would otherwise make in a statement of its own.
        INSERT INTO outbox (chat_id, message_id, last_piece, method, payload, claimed_by, claimed_until, attempts)
        SELECT $1::bigint, stored.id, s.piece = $8, s.method, s.payload,
               CASE WHEN c.claim THEN $11::text END, CASE WHEN c.claim THEN now() + $12::interval END,
               CASE WHEN c.claim THEN 1 ELSE 0 END
          FROM stored, jsonb_to_recordset($9::jsonb) AS s(piece integer, method text, payload jsonb),
               LATERAL (SELECT s.piece = 1 AND $11::text IS NOT NULL AND (SELECT sends FROM ahead) = 0 AS claim) AS c
         ORDER BY s.piece
        RETURNING id, created_at, claimed_by IS NOT NULL AS claimed
    )
    SELECT (SELECT id FROM stored) AS message_id, coalesce((SELECT released FROM conv), false) AS released,
           (SELECT sends FROM ahead) AS queued_before,
           (SELECT id FROM queued WHERE claimed) AS claimed_id,
           (SELECT created_at FROM queued WHERE claimed) AS claimed_at
"""


_RENEW_LEASE = """
UPDATE conversations SET reply_lease_until = $3 WHERE chat_id = $1 AND reply_lease_owner = $2
"""


@dataclass(frozen=True, slots=True)
class ChatState:
    """Everything a message and its reply need, read at once."""

    conversation: ConversationRow
    pending: list[MessageRow]
    recent: list[MessageRow]
    days: list[DailySummaryRow]
    recalled: list[RecalledRow]  # best match first


@dataclass(frozen=True, slots=True)
class ReadWanted:
    """One chat's part of a `read_many`: what recall looks for (None: the messages still owed a
    reply) and how many older lines it may bring (0: none)."""

    chat_id: int
    query: str | None
    recall: int


@dataclass(frozen=True, slots=True)
class MessageWrite:
    """What storing a user message writes, whichever statement does it: the message as it arrived,
    and the conversation as the message moves it ($2-$10 and $12-$15 of both statements)."""

    text: str
    telegram_message_id: int | None
    update_id: int | None
    negative: float | None
    positive: float | None
    moved_to: dict[str, Any]  # the FSM columns after the message
    now: datetime
    next_checkin_at: datetime | None
    lease_until: datetime | None
    lease_owner: str | None

    def params(self, chat_id: int, transitions: list[dict[str, Any]]) -> tuple[Any, ...]:
        """$1 to $15, `transitions` as $11."""
        return (
            chat_id,
            self.text,
            self.telegram_message_id,
            self.update_id,
            self.negative,
            self.positive,
            self.now,
            self.next_checkin_at,
            self.lease_until,
            self.lease_owner,
            json.dumps(transitions),
            self.moved_to["state"],
            self.moved_to["stage_before_repair"],
            self.moved_to["stage_messages"],
            self.moved_to["calm_streak"],
        )


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
    claimed: QueuedSend | None = None  # the first piece, queued already claimed: send it without a claim


def _stored(row: asyncpg.Record, *, seen_before: bool) -> StoredMessage:
    if row["message_id"] is not None:
        return StoredMessage(row["message_id"], row["created_at"], duplicate=False)
    return StoredMessage(None, None, duplicate=seen_before)


def _decoded(value: Any) -> Any:
    """json columns arrive decoded (the engine registers a codec on its connections), else as text."""
    return json.loads(value) if isinstance(value, str) else value


def _messages(raw: Any) -> list[MessageRow]:
    return [
        MessageRow(
            m[0],
            m[1],
            m[2],
            m[3],
            m[4],
            datetime.fromisoformat(m[5]),
            m[6],
            datetime.fromisoformat(m[7]) if m[7] else None,
            datetime.fromisoformat(m[8]) if m[8] else None,
            m[9],
            m[10],
            m[11],
        )
        for m in _decoded(raw)
    ]


def _state(row: asyncpg.Record) -> ChatState:
    return ChatState(
        ConversationRow(*(row[name] for name in ConversationRow.__slots__)),
        _messages(row["pending"]),
        _messages(row["recent"]),
        [DailySummaryRow(date.fromisoformat(day), text) for day, text in _decoded(row["days"])],
        [RecalledRow(id_, text, datetime.fromisoformat(at)) for id_, text, at in _decoded(row["recalled"])],
    )


class ReplyPathRepo:
    """The reply path's statements, on a raw asyncpg connection outside any transaction: each
    statement commits by itself, and asyncpg keeps them prepared on the connection."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection

    async def read(
        self,
        chat_id: int,
        *,
        default_tz: str,
        window: int,
        days: int = 3,
        query: str | None = None,
        recall: int = 8,
    ) -> ChatState | None:
        """`query`: what recall looks for (the new message); None: the messages still owed a reply."""
        return (
            await self.read_many([ReadWanted(chat_id, query, recall)], default_tz=default_tz, window=window, days=days)
        )[0]

    async def read_many(
        self, wanted: Sequence[ReadWanted], *, default_tz: str, window: int, days: int = 3
    ) -> list[ChatState | None]:
        """`read` for several chats in one statement: one state per entry, in order (None: no such chat)."""
        rows = await self.connection.fetch(
            _READ,
            [w.chat_id for w in wanted],
            default_tz,
            window,
            days,
            [w.query for w in wanted],
            [w.recall for w in wanted],
        )
        found = {row["n"]: _state(row) for row in rows}
        return [found.get(n) for n in range(1, len(wanted) + 1)]

    async def store_message(
        self, seen: ConversationRow, write: MessageWrite, transitions: Sequence[TransitionRecord]
    ) -> StoredMessage:
        row = await self.connection.fetchrow(
            _STORE_MESSAGE,
            *write.params(seen.chat_id, [vars_of(t) for t in transitions]),
            seen.state,
            seen.stage_before_repair,
            seen.stage_messages,
            seen.calm_streak,
            seen.user_messages,
            seen.checkins_enabled,
            seen.reply_lease_until,
            seen.reply_lease_owner,
            seen.history_since_id,
        )
        assert row is not None
        return _stored(row, seen_before=bool(row["update_seen"] or row["message_seen"]))

    async def store_first_message(
        self,
        chat_id: int,
        user: UserInfo,
        write: MessageWrite,
        *,
        started: Sequence[TransitionRecord],
        transitions: Sequence[TransitionRecord],
    ) -> StoredMessage:
        """A new chat's first message: the user, the conversation (already moved by the message), its
        `start` and the message's transitions, in one statement. Writes nothing (message_id None) if
        the conversation exists by now: the caller then takes the locking path."""
        records = [{**vars_of(t), "by_message": False} for t in started]
        records += [{**vars_of(t), "by_message": True} for t in transitions]
        row = await self.connection.fetchrow(
            _STORE_FIRST_MESSAGE,
            *write.params(chat_id, records),
            user.user_id,
            user.username,
            user.first_name,
            user.language_code,
        )
        assert row is not None
        return _stored(row, seen_before=bool(row["update_seen"]))

    async def store_reply(
        self,
        chat_id: int,
        *,
        worker: str,
        kind: str,
        text: str,
        through_id: int,
        seen_user_messages: int,
        lease_until: datetime,
        sends: Sequence[Outgoing],
        recall_note: str | None = None,
        claim: ClaimAs | None = None,
    ) -> StoredReply:
        """`claim`: the sender that will send the reply; with nothing of the chat queued ahead, the
        first piece is queued claimed by it (`StoredReply.claimed`)."""
        pieces = [{"piece": n, "method": s.method, "payload": s.payload} for n, s in enumerate(sends, 1)]
        row = await self.connection.fetchrow(
            _STORE_REPLY,
            chat_id,
            worker,
            kind,
            text,
            through_id,
            seen_user_messages,
            lease_until,
            len(sends),
            json.dumps(pieces),
            recall_note,
            claim.worker if claim else None,
            claim.lease if claim else None,
        )
        assert row is not None
        claimed = None
        if row["claimed_id"] is not None:
            claimed = QueuedSend(
                row["claimed_id"],
                chat_id,
                row["message_id"],
                len(sends) == 1,
                sends[0].method,
                sends[0].payload,
                1,
                row["claimed_at"],
            )
        return StoredReply(row["message_id"], bool(row["released"]), int(row["queued_before"] or 0), claimed)

    async def renew_lease(self, chat_id: int, worker: str, until: datetime) -> None:
        """Keep a long reply's lease (one statement, committing by itself)."""
        await self.connection.execute(_RENEW_LEASE, chat_id, worker, until)
