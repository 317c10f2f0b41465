"""Plans and reminders: noted from a user's message, claimed when due by one scheduler of many
(`FOR UPDATE SKIP LOCKED` and a claim that expires), written once, cancelled from /reminders."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.database import Executor
from storage.sql import Statement, read_row, values_of

_ADD = Statement("""
    INSERT INTO followups (chat_id, kind, what, topic, event_at, due_at, message_id)
    VALUES (:chat_id, :kind, :what, CAST(:topic AS text), :event_at, :due_at, CAST(:message_id AS bigint))
    ON CONFLICT (message_id) WHERE message_id IS NOT NULL DO NOTHING
    RETURNING id
""")
# Due rows of chats that may hear from the friend; a claim another scheduler holds is skipped.
_CLAIM = Statement("""
    WITH due AS (
        SELECT f.id FROM followups AS f JOIN conversations AS c ON c.chat_id = f.chat_id
         WHERE f.status = 'pending' AND f.due_at <= :now AND (f.claimed_until IS NULL OR f.claimed_until < :now)
           AND c.active AND c.held_for IS NULL
         ORDER BY f.due_at LIMIT :limit
           FOR UPDATE OF f SKIP LOCKED
    )
    UPDATE followups AS f SET claimed_by = :worker, claimed_until = :until, attempts = f.attempts + 1
      FROM due, conversations AS c JOIN users AS u ON u.id = c.user_id
     WHERE f.id = due.id AND c.chat_id = f.chat_id
    RETURNING f.id, f.chat_id, f.kind, f.what, f.topic, f.event_at, f.due_at, f.attempts, c.checkins_enabled,
              u.timezone
""")
_TALKED_ABOUT = Statement("""
    SELECT EXISTS (SELECT 1 FROM messages
                    WHERE chat_id = :chat_id AND role = 'user' AND created_at > :since
                      AND position(lower(:topic) IN lower(text)) > 0)
""")
_FINISH = Statement("""
    UPDATE followups SET status = :status, sent_message_id = CAST(:sent_message_id AS bigint),
                         claimed_by = NULL, claimed_until = NULL
     WHERE id = :id AND claimed_by = :worker AND status = 'pending'
    RETURNING id
""")
_RELEASE = Statement("""
    UPDATE followups SET claimed_by = NULL, claimed_until = NULL, due_at = :retry_at
     WHERE id = :id AND claimed_by = :worker
""")
_COMING = Statement("""
    SELECT id, chat_id, kind, what, topic, event_at, due_at, attempts FROM followups
     WHERE chat_id = :chat_id AND status = 'pending' ORDER BY due_at, id LIMIT 20
""")
_CANCEL = Statement("""
    UPDATE followups SET status = 'cancelled' WHERE id = :id AND chat_id = :chat_id AND status = 'pending'
    RETURNING what
""")
_FORGET_WORDS = Statement("""
    WITH gone AS (
        DELETE FROM followups WHERE chat_id = :chat_id AND position(lower(:words) IN lower(what)) > 0 RETURNING 1
    )
    SELECT count(*) FROM gone
""")


@dataclass(frozen=True, slots=True)
class NewFollowup:
    chat_id: int
    kind: str  # plan or reminder
    what: str
    topic: str | None
    event_at: datetime
    due_at: datetime
    message_id: int | None


@dataclass(frozen=True, slots=True)
class Followup:
    id: int
    chat_id: int
    kind: str
    what: str
    topic: str | None
    event_at: datetime
    due_at: datetime
    attempts: int


@dataclass(frozen=True, slots=True)
class DueFollowup(Followup):
    """A row claimed to be written now, with what decides whether it still should be."""

    checkins_enabled: bool
    timezone: str | None


class FollowupRepo:
    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def add(self, new: NewFollowup) -> int | None:
        """The new row's id; None when the message it was read from was read before (one per message)."""
        followup_id: int | None = await self.executor.fetchval(_ADD, **values_of(new))
        return followup_id

    async def claim_due(self, now: datetime, *, worker: str, until: datetime, limit: int) -> list[DueFollowup]:
        rows = await self.executor.fetch(_CLAIM, now=now, worker=worker, until=until, limit=limit)
        return [read_row(DueFollowup, row) for row in rows]

    async def talked_about(self, chat_id: int, topic: str, since: datetime) -> bool:
        """Whether the user mentioned `topic` after `since` (the plan's time): no follow-up needed."""
        return bool(await self.executor.fetchval(_TALKED_ABOUT, chat_id=chat_id, topic=topic, since=since))

    async def finish(self, followup_id: int, worker: str, status: str, sent_message_id: int | None = None) -> bool:
        """Mark a claimed row sent or skipped; False when the claim was lost (another wrote it)."""
        row = await self.executor.fetchval(
            _FINISH, id=followup_id, worker=worker, status=status, sent_message_id=sent_message_id
        )
        return row is not None

    async def release(self, followup_id: int, worker: str, retry_at: datetime) -> None:
        await self.executor.execute(_RELEASE, id=followup_id, worker=worker, retry_at=retry_at)

    async def coming(self, chat_id: int) -> list[Followup]:
        return [read_row(Followup, row) for row in await self.executor.fetch(_COMING, chat_id=chat_id)]

    async def cancel(self, chat_id: int, followup_id: int) -> str | None:
        """Cancel a pending row of this chat; its words, or None when there was none to cancel."""
        what: str | None = await self.executor.fetchval(_CANCEL, chat_id=chat_id, id=followup_id)
        return what

    async def forget_words(self, chat_id: int, words: str) -> int:
        return int(await self.executor.fetchval(_FORGET_WORDS, chat_id=chat_id, words=words))
