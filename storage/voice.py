"""Voice and video notes: kept when they arrive, claimed by one bot process to be heard (a claim
that expires, so a process that died leaves the note to another), finished once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.database import Executor
from storage.sql import Statement, read_row, values_of

_KEEP = Statement("""
    INSERT INTO voice_notes (chat_id, telegram_message_id, kind, file_id, duration_seconds, size_bytes)
    VALUES (:chat_id, :telegram_message_id, :kind, :file_id, :duration_seconds, CAST(:size_bytes AS bigint))
    ON CONFLICT (chat_id, telegram_message_id) DO NOTHING
    RETURNING id
""")
_COLUMNS = """v.id, v.chat_id, v.telegram_message_id, v.kind, v.file_id, v.duration_seconds, v.size_bytes,
              v.attempts, u.id AS user_id, u.username, u.first_name, u.language_code"""
# One note, if no live claim holds it; or (note_id NULL) the oldest notes left waiting: a claim
# that expired (its process died mid-way), or never taken (it died between storing and hearing).
_CLAIM = Statement(f"""
    WITH due AS (
        SELECT v.id FROM voice_notes AS v
         WHERE v.status = 'waiting'
           AND (v.id = CAST(:note_id AS bigint)
                OR (CAST(:note_id AS bigint) IS NULL AND v.created_at < :stale_before))
           AND (v.claimed_until IS NULL OR v.claimed_until < :now)
         ORDER BY v.created_at LIMIT :limit
           FOR UPDATE OF v SKIP LOCKED
    )
    UPDATE voice_notes AS v SET claimed_by = :worker, claimed_until = :until, attempts = v.attempts + 1
      FROM due, conversations AS c JOIN users AS u ON u.id = c.user_id
     WHERE v.id = due.id AND c.chat_id = v.chat_id
    RETURNING {_COLUMNS}
""")
_FINISH = Statement("""
    UPDATE voice_notes
       SET status = :status, outcome = CAST(:outcome AS text), message_id = CAST(:message_id AS bigint),
           seconds_heard = CAST(:seconds_heard AS float8), heard_at = now(), claimed_by = NULL, claimed_until = NULL
     WHERE id = :id AND status = 'waiting'
    RETURNING id
""")


@dataclass(frozen=True, slots=True)
class NewVoiceNote:
    chat_id: int
    telegram_message_id: int
    kind: str  # voice or video_note
    file_id: str
    duration_seconds: int
    size_bytes: int | None


@dataclass(frozen=True, slots=True)
class ClaimedVoiceNote:
    """A note this process hears now, with who sent it."""

    id: int
    chat_id: int
    telegram_message_id: int
    kind: str
    file_id: str
    duration_seconds: int
    size_bytes: int | None
    attempts: int
    user_id: int
    username: str | None
    first_name: str | None
    language_code: str | None


class VoiceNoteRepo:
    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def keep(self, note: NewVoiceNote) -> int | None:
        """Store a note as it arrived; None when it was stored before (a redelivery)."""
        note_id: int | None = await self.executor.fetchval(_KEEP, **values_of(note))
        return note_id

    async def claim(
        self,
        note_id: int | None,
        *,
        worker: str,
        now: datetime,
        until: datetime,
        stale_before: datetime,
        limit: int = 1,
    ) -> list[ClaimedVoiceNote]:
        """Claim `note_id` (or, with None, up to `limit` left waiting since before `stale_before`)."""
        rows = await self.executor.fetch(
            _CLAIM, note_id=note_id, worker=worker, now=now, until=until, stale_before=stale_before, limit=limit
        )
        return [read_row(ClaimedVoiceNote, row) for row in rows]

    async def finish(
        self,
        note_id: int,
        *,
        status: str,
        message_id: int | None = None,
        outcome: str | None = None,
        seconds_heard: float | None = None,
    ) -> bool:
        """Heard (with the message it became) or refused (with why); False when it was finished before."""
        done = await self.executor.fetchval(
            _FINISH, id=note_id, status=status, outcome=outcome, message_id=message_id, seconds_heard=seconds_heard
        )
        return done is not None
