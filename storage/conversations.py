"""Conversations outside the reply path: opening one, commands' changes, the users behind them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from storage.database import Executor
from storage.rows import ConversationRow, FsmColumns, TransitionRecord, UserInfo
from storage.sql import Statement, read_row, values_of

# A `ConversationRow`'s columns, from `conversations AS c JOIN users AS u` (the reply path reads them too).
CONVERSATION_COLUMNS = """
    c.chat_id, c.user_id, c.state, c.stage_before_repair, c.stage_messages, c.calm_streak,
    c.user_messages, c.bot_messages, c.last_user_message_at, c.last_bot_message_at, c.active,
    c.checkins_enabled, c.checkins_unanswered, c.last_checkin_at, c.next_checkin_at,
    c.reply_lease_until, c.reply_lease_owner, c.history_since_id, c.memory_summary,
    c.summarized_through_id, c.prompt_stage, c.held_for, c.held_until,
    u.timezone, u.username, u.first_name, u.admitted_at, u.language_code"""

# The user a message comes from, created or brought up to date (only when the name changed, so an
# unchanged user costs no row version); a CTE named `person` returning the user's id when written.
UPSERT_PERSON = """
    person AS (
        INSERT INTO users (id, username, first_name, language_code)
        VALUES (:user_id, CAST(:username AS text), CAST(:first_name AS text), CAST(:language_code AS text))
        ON CONFLICT (id) DO UPDATE
           SET username = EXCLUDED.username, first_name = EXCLUDED.first_name,
               language_code = EXCLUDED.language_code, updated_at = now()
         WHERE users.username IS DISTINCT FROM EXCLUDED.username
            OR users.first_name IS DISTINCT FROM EXCLUDED.first_name
        RETURNING id
    )"""

_SELECT = f"""
    SELECT {CONVERSATION_COLUMNS}
      FROM conversations AS c JOIN users AS u ON u.id = c.user_id
     WHERE c.chat_id = :chat_id"""
_GET = Statement(_SELECT)
_LOCK = Statement(_SELECT + " FOR UPDATE OF c")
_OPEN = Statement(f"""
    WITH {UPSERT_PERSON}
    INSERT INTO conversations (chat_id, user_id) VALUES (:chat_id, :user_id)
    ON CONFLICT DO NOTHING RETURNING chat_id
""")
_RECORD_UPDATE = Statement("""
    INSERT INTO processed_updates (update_id, chat_id) VALUES (:update_id, :chat_id)
    ON CONFLICT DO NOTHING RETURNING update_id
""")
_ADD_MESSAGE = Statement("""
    INSERT INTO messages (chat_id, role, kind, text, answered_at)
    VALUES (:chat_id, :role, :kind, :text, CASE WHEN CAST(:answered AS boolean) THEN now() END)
    RETURNING id
""")
_ADD_TRANSITIONS = Statement("""
    INSERT INTO state_transitions (chat_id, from_state, to_state, trigger, user_messages,
                                   sentiment_negative, sentiment_positive, message_id)
    SELECT :chat_id, t.from_state, t.to_state, t.trigger, t.user_messages, t.sentiment_negative,
           t.sentiment_positive, CAST(:message_id AS bigint)
      FROM ROWS FROM (jsonb_to_recordset(CAST(:transitions AS jsonb)) AS (
               from_state text, to_state text, trigger text, user_messages integer,
               sentiment_negative double precision, sentiment_positive double precision
           )) WITH ORDINALITY AS t(from_state, to_state, trigger, user_messages, sentiment_negative,
                                   sentiment_positive, n)
     ORDER BY t.n
""")
_MOVE = Statement("""
    UPDATE conversations
       SET state = :state, stage_before_repair = CAST(:stage_before_repair AS text), stage_messages = :stage_messages,
           calm_streak = :calm_streak, updated_at = now()
     WHERE chat_id = :chat_id
""")
_RESET = Statement("""
    UPDATE conversations
       SET state = :state, stage_before_repair = CAST(:stage_before_repair AS text), stage_messages = :stage_messages,
           calm_streak = :calm_streak, updated_at = now(), prompt_stage = :state,
           history_since_id = (SELECT coalesce(max(id), 0) FROM messages WHERE chat_id = :chat_id)
     WHERE chat_id = :chat_id
""")
_GREETED = Statement("""
    UPDATE conversations
       SET bot_messages = bot_messages + 1, last_bot_message_at = now(), active = true,
           next_checkin_at = coalesce(next_checkin_at, CAST(:next_checkin_at AS timestamptz)), updated_at = now()
     WHERE chat_id = :chat_id
""")
_SET_CHECKINS = Statement("""
    UPDATE conversations
       SET checkins_enabled = :enabled, next_checkin_at = CAST(:next_checkin_at AS timestamptz), updated_at = now()
     WHERE chat_id = :chat_id
""")
_DEACTIVATE = Statement("""
    UPDATE conversations
       SET active = false, next_checkin_at = NULL, reply_lease_until = NULL, reply_lease_owner = NULL,
           updated_at = now()
     WHERE chat_id = :chat_id
""")
_REACTIVATE = Statement("UPDATE conversations SET active = true, updated_at = now() WHERE chat_id = :chat_id")
_SET_TIMEZONE = Statement("UPDATE users SET timezone = :timezone, updated_at = now() WHERE id = :user_id")
_COMMAND_TEXT = Statement("""
    SELECT text FROM messages WHERE id = :message_id AND chat_id = :chat_id AND role = 'user' AND kind = 'command'
""")
_PRUNE_UPDATES = Statement("""
    WITH pruned AS (DELETE FROM processed_updates WHERE received_at < :before RETURNING 1)
    SELECT count(*) FROM pruned
""")
# Every row about a user goes; update ids stay (so a redelivery is still recognized) but lose
# their link to the chat. Messages, transitions, summaries and check-ins go with the user's
# conversations (ON DELETE CASCADE); what refers to a chat id alone is deleted here.
_FORGET = Statement("""
    WITH chats AS (
        SELECT chat_id FROM conversations WHERE user_id = :user_id UNION SELECT CAST(:user_id AS bigint)
    ), unlinked AS (
        UPDATE processed_updates SET chat_id = NULL WHERE chat_id IN (SELECT chat_id FROM chats)
    ), unsent AS (
        DELETE FROM outbox WHERE chat_id IN (SELECT chat_id FROM chats)
    ), set_aside AS (
        DELETE FROM dead_letters WHERE chat_id IN (SELECT chat_id FROM chats)
    ), gone AS (
        DELETE FROM users WHERE id = :user_id RETURNING 1
    )
    SELECT count(*) FROM gone
""")


class ConversationRepo:
    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def get(self, chat_id: int) -> ConversationRow | None:
        row = await self.executor.fetchrow(_GET, chat_id=chat_id)
        return read_row(ConversationRow, row) if row is not None else None

    async def lock(self, chat_id: int) -> ConversationRow | None:
        """The conversation, locked until the transaction ends: the per-chat order."""
        row = await self.executor.fetchrow(_LOCK, chat_id=chat_id)
        return read_row(ConversationRow, row) if row is not None else None

    async def open(self, chat_id: int, user: UserInfo) -> tuple[ConversationRow, bool]:
        """The conversation, locked, created on first contact (True then); the user's names kept current."""
        created = await self.executor.fetchval(_OPEN, chat_id=chat_id, **values_of(user)) is not None
        row = await self.lock(chat_id)
        assert row is not None
        return row, created

    async def record_update(self, update_id: int, chat_id: int | None) -> bool:
        """Remember a Telegram update id; False when it was seen before."""
        return await self.executor.fetchval(_RECORD_UPDATE, update_id=update_id, chat_id=chat_id) is not None

    async def add_message(self, chat_id: int, *, role: str, kind: str, text: str, answered: bool = False) -> int:
        """A message outside the reply path (a command, its answer, a check-in); its id."""
        message_id: int = await self.executor.fetchval(
            _ADD_MESSAGE, chat_id=chat_id, role=role, kind=kind, text=text, answered=answered
        )
        return message_id

    async def add_transitions(
        self, chat_id: int, transitions: Sequence[TransitionRecord], message_id: int | None = None
    ) -> None:
        if transitions:
            records = [values_of(t) for t in transitions]
            await self.executor.execute(_ADD_TRANSITIONS, chat_id=chat_id, transitions=records, message_id=message_id)

    async def move(self, chat_id: int, fsm: FsmColumns) -> None:
        await self.executor.execute(_MOVE, chat_id=chat_id, **values_of(fsm))

    async def reset(self, chat_id: int, fsm: FsmColumns) -> None:
        """Move the stage and start the short-term history after the newest message."""
        await self.executor.execute(_RESET, chat_id=chat_id, **values_of(fsm))

    async def greeted(self, chat_id: int, *, next_checkin_at: datetime | None) -> None:
        """A greeting was queued: counted, the chat active, a check-in planned if none was."""
        await self.executor.execute(_GREETED, chat_id=chat_id, next_checkin_at=next_checkin_at)

    async def set_checkins(self, chat_id: int, *, enabled: bool, next_checkin_at: datetime | None) -> None:
        await self.executor.execute(_SET_CHECKINS, chat_id=chat_id, enabled=enabled, next_checkin_at=next_checkin_at)

    async def deactivate(self, chat_id: int) -> None:
        """The user blocked the bot: no check-ins, nobody holding its replies."""
        await self.executor.execute(_DEACTIVATE, chat_id=chat_id)

    async def reactivate(self, chat_id: int) -> None:
        """The user unblocked the bot: it may write to them again."""
        await self.executor.execute(_REACTIVATE, chat_id=chat_id)

    async def set_timezone(self, user_id: int, timezone: str | None) -> None:
        await self.executor.execute(_SET_TIMEZONE, user_id=user_id, timezone=timezone)

    async def command_text(self, chat_id: int, message_id: int) -> str | None:
        """The text of a command this chat sent (for a button under its answer)."""
        text: str | None = await self.executor.fetchval(_COMMAND_TEXT, chat_id=chat_id, message_id=message_id)
        return text

    async def prune_updates(self, before: datetime) -> int:
        """Forget update ids older than Telegram ever redelivers (it keeps updates for 24 hours)."""
        return int(await self.executor.fetchval(_PRUNE_UPDATES, before=before))

    async def forget(self, user_id: int) -> int:
        """Delete every row about a user; how many users went (0 or 1)."""
        return int(await self.executor.fetchval(_FORGET, user_id=user_id))
