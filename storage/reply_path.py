"""The reply path's statements: each one atomic on its own (data-modifying CTEs), so a message and
its reply need no transaction held open.

1. `read`: the conversation, its user, what is owed a reply, the recent history, the day summaries,
   the older lines that match what was written (full-text search) and the voice notes still being
   heard, in one statement (one snapshot: a transcript is either among what is owed, or its note
   is still unheard, never neither).
2. `store_message`: record the update id, store the message, move the conversation (stage,
   counters, reply lease) and log its transitions, only if the conversation is still as `read`
   saw it; otherwise nothing is written and the caller reads again (`Changed`).
(The reply is stored by `storage.replies`.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from storage.conversations import CONVERSATION_COLUMNS, UPSERT_PERSON
from storage.database import Executor
from storage.errors import ConflictError
from storage.rows import (
    ConversationRow,
    DailySummaryRow,
    FsmColumns,
    MessageRow,
    RecalledRow,
    Standing,
    TransitionRecord,
    UserInfo,
)
from storage.sql import Row, Statement, read_row, values_of

_MESSAGE = (
    "m.id, m.chat_id, m.role, m.kind, m.text, m.created_at, m.telegram_message_id, m.answered_at, "
    "m.delivered_at, m.sentiment_negative, m.sentiment_positive, m.recall_note"
)
_RECENT = """
    SELECT {columns} FROM messages AS m
     WHERE m.chat_id = c.chat_id AND m.id > greatest(c.history_since_id, c.summarized_through_id) AND m.recallable
     ORDER BY m.id DESC LIMIT :window"""
_READ = Statement(f"""
    SELECT {CONVERSATION_COLUMNS},
           (SELECT coalesce(json_agg(p ORDER BY p.id), '[]') FROM (
               SELECT {_MESSAGE} FROM messages AS m
                WHERE m.chat_id = c.chat_id AND m.role = 'user' AND m.answered_at IS NULL) AS p) AS pending,
           (SELECT coalesce(json_agg(r ORDER BY r.id), '[]') FROM ({_RECENT.format(columns=_MESSAGE)}) AS r) AS recent,
           (SELECT coalesce(json_agg(d ORDER BY d.day), '[]') FROM (
               SELECT s.day, s.text FROM daily_summaries AS s
                WHERE s.chat_id = c.chat_id
                  AND s.day < (now() AT TIME ZONE coalesce(u.timezone, CAST(:default_tz AS text)))::date
                ORDER BY s.day DESC LIMIT :days) AS d) AS days,
           (SELECT coalesce(json_agg(h ORDER BY h.rank), '[]') FROM aifriend_recall(
                c.chat_id, aifriend_text_config(u.language_code),
                coalesce(CAST(:query AS text), (SELECT string_agg(p.text, ' ') FROM messages AS p
                                                 WHERE p.chat_id = c.chat_id AND p.role = 'user'
                                                   AND p.answered_at IS NULL)),
                c.history_since_id,
                coalesce((SELECT min(w.id) FROM ({_RECENT.format(columns="m.id")}) AS w), 9223372036854775807),
                c.user_messages, CAST(:recall AS integer)) WITH ORDINALITY AS h(id, text, created_at, rank)
             WHERE CAST(:recall AS integer) > 0) AS recalled,
           a.access, l.replies_limit, l.tokens_limit,
           (SELECT count(*) FROM (
               SELECT m.created_at FROM messages AS m
                WHERE m.chat_id = c.chat_id AND m.role = 'assistant' AND m.kind IN ('reply', 'fallback')
                ORDER BY m.id DESC LIMIT l.replies_limit) AS w
             WHERE w.created_at > now() - interval '60 seconds') AS replies_in_window,
           (SELECT min(w.created_at) FROM (
               SELECT m.created_at FROM messages AS m
                WHERE m.chat_id = c.chat_id AND m.role = 'assistant' AND m.kind IN ('reply', 'fallback')
                ORDER BY m.id DESC LIMIT l.replies_limit) AS w
             WHERE w.created_at > now() - interval '60 seconds') AS window_started,
           coalesce((SELECT d.tokens FROM usage_days AS d
                      WHERE d.user_id = c.user_id
                        AND d.day = (now() AT TIME ZONE coalesce(u.timezone, CAST(:default_tz AS text)))::date), 0)
               AS tokens_today,
           (SELECT min(v.telegram_message_id) FROM voice_notes AS v
             WHERE v.chat_id = c.chat_id AND v.status = 'waiting'
               AND NOT EXISTS (SELECT 1 FROM messages AS m
                                WHERE m.chat_id = v.chat_id AND m.role = 'user'
                                  AND m.telegram_message_id = v.telegram_message_id)) AS first_unheard_voice
      FROM conversations AS c JOIN users AS u ON u.id = c.user_id
           LEFT JOIN user_access AS a ON a.user_id = c.user_id
           CROSS JOIN LATERAL (
               SELECT coalesce(a.limit_replies_per_minute, CAST(:replies_limit AS integer)) AS replies_limit,
                      coalesce(a.limit_tokens_per_day, CAST(:tokens_limit AS bigint)) AS tokens_limit) AS l
     WHERE c.chat_id = :chat_id
""")

# Both ways of storing a user message end alike once `conv` names the chat it went to: the update
# is marked seen and the message stored; `stored` is what its transitions refer to.
_SEEN_AND_STORED = """
    seen AS (
        INSERT INTO processed_updates (update_id, chat_id)
        SELECT CAST(:update_id AS bigint), chat_id FROM conv WHERE CAST(:update_id AS bigint) IS NOT NULL
        ON CONFLICT DO NOTHING
    ), stored AS (
        INSERT INTO messages (chat_id, role, kind, text, telegram_message_id, update_id,
                              sentiment_negative, sentiment_positive)
        SELECT chat_id, 'user', :kind, :text, CAST(:telegram_message_id AS bigint), CAST(:update_id AS bigint),
               CAST(:negative AS float8), CAST(:positive AS float8) FROM conv
        RETURNING id, created_at
    ), moved AS (
        INSERT INTO state_transitions (chat_id, from_state, to_state, trigger, user_messages,
                                       sentiment_negative, sentiment_positive, message_id)
        SELECT :chat_id, t.from_state, t.to_state, t.trigger, t.user_messages, t.sentiment_negative,
               t.sentiment_positive, CASE WHEN t.by_message THEN stored.id END
          FROM stored,
               ROWS FROM (jsonb_to_recordset(CAST(:transitions AS jsonb)) AS (
                   from_state text, to_state text, trigger text, user_messages integer,
                   sentiment_negative double precision, sentiment_positive double precision, by_message boolean
               )) WITH ORDINALITY AS t(from_state, to_state, trigger, user_messages, sentiment_negative,
                                       sentiment_positive, by_message, n)
         ORDER BY t.n
    )
    SELECT (SELECT id FROM stored) AS message_id, (SELECT created_at FROM stored) AS created_at,
           EXISTS (SELECT 1 FROM processed_updates WHERE update_id = CAST(:update_id AS bigint))
           OR EXISTS (SELECT 1 FROM messages WHERE chat_id = :chat_id AND role = 'user'
                                               AND telegram_message_id = CAST(:telegram_message_id AS bigint))
               AS seen_before"""

# The user row is written first (the scalar subquery in `conv` waits for it): the trigger that
# indexes the message for recall reads the user's language from it.
_STORE_MESSAGE = Statement(f"""
    WITH person AS (
        UPDATE users SET username = :username, first_name = :first_name, language_code = :language_code,
                         updated_at = now()
         WHERE id = :user_id AND (username IS DISTINCT FROM CAST(:username AS text)
                                  OR first_name IS DISTINCT FROM CAST(:first_name AS text))
        RETURNING id
    ), conv AS (
        UPDATE conversations
           SET state = :state, stage_before_repair = CAST(:stage_before_repair AS text),
               stage_messages = :stage_messages, calm_streak = :calm_streak, user_messages = user_messages + 1,
               last_user_message_at = :now, checkins_unanswered = 0, active = true,
               next_checkin_at = CAST(:next_checkin_at AS timestamptz),
               reply_lease_until = CAST(:lease_until AS timestamptz), reply_lease_owner = CAST(:lease_owner AS text),
               updated_at = now()
         WHERE chat_id = :chat_id AND (SELECT count(*) FROM person) >= 0
           AND state = :seen_state AND stage_before_repair IS NOT DISTINCT FROM CAST(:seen_stage_before_repair AS text)
           AND stage_messages = :seen_stage_messages AND calm_streak = :seen_calm_streak
           AND user_messages = :seen_user_messages AND checkins_enabled = :seen_checkins_enabled
           AND reply_lease_until IS NOT DISTINCT FROM CAST(:seen_reply_lease_until AS timestamptz)
           AND reply_lease_owner IS NOT DISTINCT FROM CAST(:seen_reply_lease_owner AS text)
           AND history_since_id = :seen_history_since_id
           AND NOT EXISTS (SELECT 1 FROM processed_updates WHERE update_id = CAST(:update_id AS bigint))
           AND NOT EXISTS (SELECT 1 FROM messages WHERE chat_id = :chat_id AND role = 'user'
                                                    AND telegram_message_id = CAST(:telegram_message_id AS bigint))
        RETURNING chat_id
    ), {_SEEN_AND_STORED}
""")

_STORE_FIRST_MESSAGE = Statement(f"""
    WITH {UPSERT_PERSON}, conv AS (
        INSERT INTO conversations (chat_id, user_id, state, stage_before_repair, stage_messages, calm_streak,
                                   user_messages, last_user_message_at, next_checkin_at,
                                   reply_lease_until, reply_lease_owner)
        SELECT :chat_id, :user_id, :state, CAST(:stage_before_repair AS text), :stage_messages, :calm_streak, 1,
               :now, CAST(:next_checkin_at AS timestamptz), CAST(:lease_until AS timestamptz),
               CAST(:lease_owner AS text)
         WHERE (SELECT count(*) FROM person) >= 0
           AND NOT EXISTS (SELECT 1 FROM processed_updates WHERE update_id = CAST(:update_id AS bigint))
        ON CONFLICT (chat_id) DO NOTHING
        RETURNING chat_id
    ), {_SEEN_AND_STORED}
""")


@dataclass(frozen=True, slots=True)
class ChatState:
    """Everything a message and its reply need, read at once."""

    conversation: ConversationRow
    pending: list[MessageRow]
    recent: list[MessageRow]
    days: list[DailySummaryRow]
    recalled: list[RecalledRow]  # best match first
    standing: Standing
    first_unheard_voice: int | None  # Telegram's id of the oldest voice note whose transcript is not stored yet


@dataclass(frozen=True, slots=True)
class MessageWrite:
    """What storing a user message writes: the message as it arrived, and where it moves the chat."""

    text: str
    telegram_message_id: int | None
    update_id: int | None
    negative: float | None
    positive: float | None
    moved: FsmColumns  # the stage columns after the message
    transitions: tuple[TransitionRecord, ...]  # those of the message
    now: datetime
    next_checkin_at: datetime | None
    lease_until: datetime | None
    lease_owner: str | None
    kind: str = "text"  # or "voice": a voice note's transcript


@dataclass(frozen=True, slots=True)
class Stored:
    message_id: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The update, or the Telegram message, was stored before: nothing to do."""


@dataclass(frozen=True, slots=True)
class Changed:
    """The conversation changed since it was read (or was created meanwhile): nothing was written."""


class ReplyPathRepo:
    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def read(
        self,
        chat_id: int,
        *,
        default_tz: str,
        window: int,
        days: int = 3,
        query: str | None = None,
        recall: int = 8,
        replies_limit: int = 0,
        tokens_limit: int = 0,
    ) -> ChatState | None:
        """`query`: what recall looks for (the new message); None: the messages still owed a reply.
        `replies_limit`, `tokens_limit`: the settings, for users without limits of their own."""
        row = await self.executor.fetchrow(
            _READ,
            chat_id=chat_id,
            default_tz=default_tz,
            window=window,
            days=days,
            query=query,
            recall=recall,
            replies_limit=replies_limit,
            tokens_limit=tokens_limit,
        )
        return _state(row) if row is not None else None

    async def store_message(
        self, chat_id: int, user: UserInfo, write: MessageWrite, *, seen: ConversationRow | None
    ) -> Stored | Duplicate | Changed:
        """Store a user message as `seen` saw the chat; `seen` None: the chat's first message, which
        creates the conversation (and its `start` transition, the first of `write.transitions`)."""
        values = {**values_of(write), **values_of(write.moved), **values_of(user), "chat_id": chat_id}
        values["transitions"] = [
            {**values_of(t), "by_message": seen is not None or t.trigger != "start"} for t in write.transitions
        ]
        if seen is not None:
            values |= {f"seen_{name}": value for name, value in values_of(seen).items()}
        try:
            row = await self.executor.fetchrow(_STORE_MESSAGE if seen is not None else _STORE_FIRST_MESSAGE, **values)
        except ConflictError:  # the same message, or the chat's creation, by a concurrent delivery
            return Changed()
        assert row is not None
        if row["message_id"] is not None:
            return Stored(row["message_id"], row["created_at"])
        return Duplicate() if row["seen_before"] else Changed()


def _messages(rows: Sequence[dict[str, Any]]) -> list[MessageRow]:
    return [
        read_row(
            MessageRow,
            {
                **m,
                "created_at": _when(m["created_at"]),
                "answered_at": _when(m["answered_at"]),
                "delivered_at": _when(m["delivered_at"]),
            },
        )
        for m in rows
    ]


def _when(value: str | None) -> Any:
    return datetime.fromisoformat(value) if value is not None else None


def _state(row: Row) -> ChatState:
    return ChatState(
        read_row(ConversationRow, row),
        _messages(row["pending"]),
        _messages(row["recent"]),
        [DailySummaryRow(date.fromisoformat(d["day"]), d["text"]) for d in row["days"]],
        [RecalledRow(h["id"], h["text"], datetime.fromisoformat(h["created_at"])) for h in row["recalled"]],
        read_row(Standing, row),
        row["first_unheard_voice"],
    )
