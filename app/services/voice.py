"""Voice and video notes: kept when they arrive, heard once, then answered like typed text.

1. `keep` (in the update's own transaction): the note is stored (file id, duration, size) before
   anything can fail; one over `VOICE_MAX_SECONDS` or Telegram's 20 MB download limit is refused
   there, kindly, without a download or a model request.
2. `hear` (in the background, once the update is committed): one bot process claims the note,
   downloads it through the Bot API, decodes and transcribes it off the event loop
   (`llm.speech.Transcriber`), and the transcript is taken like a typed message (kind `voice`):
   stage machine, sentiment, memory, recall, plans, burst merging. Telegram's message id makes
   that take happen once, even when a process dies between the take and the note's finish.
3. `sweep` (the healer's turn): a note whose process died mid-way is claimed again after its
   lease; after `MAX_ATTEMPTS` claims it is refused ("I couldn't make that out") instead of being
   retried forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

import structlog

from app.services.background import Background
from app.services.commands import CommandService, UpdateUnit
from app.services.friend import Friend
from app.services.outbox import Outbox
from app.services.values import utcnow
from llm.audio import AudioTooLongError, UndecodableAudioError
from llm.speech import Transcriber, TranscriptionError, language_hint
from storage.rows import UserInfo
from storage.voice import ClaimedVoiceNote, NewVoiceNote, VoiceNoteRepo

log = structlog.get_logger(__name__)

MAX_DOWNLOAD = 20 * 1024 * 1024  # the Bot API's getFile limit
MAX_ATTEMPTS = 3  # claims of one note before it is given up, kindly
UNCLEAR = "I couldn't make that out, could you type it?"


def too_long(limit_seconds: int) -> str:
    minutes, seconds = divmod(limit_seconds, 60)
    limit = f"{minutes} minute{'s' if minutes != 1 else ''}" if not seconds else f"{limit_seconds} seconds"
    return f"That voice note is longer than I can listen to: {limit} at most. Could you send a shorter one, or type it?"


TOO_BIG = "That note is over 20 MB, more than Telegram lets me download. Could you send a shorter one, or type it?"


class DownloadTooBigError(Exception):
    """Telegram refused to hand the file out: over its 20 MB limit."""


class FileSource(Protocol):
    async def download(self, file_id: str) -> bytes:
        """The file's bytes through the Bot API (getFile, then the file route); raises
        DownloadTooBigError over the limit, and any other error when Telegram cannot be reached."""


@dataclass(frozen=True, slots=True)
class VoiceIn:
    """A voice or video note as the update carried it."""

    telegram_message_id: int
    kind: str  # voice or video_note
    file_id: str
    duration: int
    size: int | None


class VoiceNotes:
    def __init__(
        self,
        *,
        friend: Friend,
        files: FileSource,
        transcriber: Transcriber,
        max_seconds: int,
        lease: timedelta = timedelta(minutes=2),
    ) -> None:
        self.friend = friend
        self.files = files
        self.transcriber = transcriber
        self.max_seconds = max_seconds
        self.lease = lease
        self.background: Background = friend.background
        self.commands: CommandService = friend.commands

    async def keep(self, unit: UpdateUnit, note: VoiceIn) -> int | None:
        """Store the note in the update's transaction; the id to `hear` once committed, or None
        when there is nothing to hear (refused here, or stored before)."""
        refusal = self._refusal(note)
        if refusal is not None:
            outcome, answer = refusal
            log.info("voice_refused", outcome=outcome, seconds=note.duration, size=note.size)
            await self.commands.note_other(unit, _described(note), answer)
            return None
        await self.commands.open_conversation(unit)
        return await VoiceNoteRepo(unit.tx).keep(
            NewVoiceNote(unit.chat_id, note.telegram_message_id, note.kind, note.file_id, note.duration, note.size)
        )

    def _refusal(self, note: VoiceIn) -> tuple[str, str] | None:
        if note.duration > self.max_seconds:
            return "too_long", too_long(self.max_seconds)
        if note.size is not None and note.size > MAX_DOWNLOAD:
            return "too_big", TOO_BIG
        return None

    def spawn(self, note_id: int, outbox: Outbox) -> None:
        self.background.spawn(self.hear(note_id, outbox))

    async def hear(self, note_id: int, outbox: Outbox) -> None:
        """Claim the note and take its transcript; nothing when another process holds it."""
        now = utcnow()
        claimed = await VoiceNoteRepo(self.friend.database).claim(
            note_id, worker=self.friend.rules.worker, now=now, until=now + self.lease, stale_before=now
        )
        for note in claimed:
            await self._hear(note, outbox)

    async def sweep(self, outbox: Outbox) -> int:
        """Hear the notes a process left waiting (it died mid-way, or before it began); how many."""
        now = utcnow()
        claimed = await VoiceNoteRepo(self.friend.database).claim(
            None,
            worker=self.friend.rules.worker,
            now=now,
            until=now + self.lease,
            stale_before=now - self.lease,
            limit=10,
        )
        for note in claimed:
            await self._hear(note, outbox)
        return len(claimed)

    async def _hear(self, note: ClaimedVoiceNote, outbox: Outbox) -> None:
        with structlog.contextvars.bound_contextvars(chat_id=note.chat_id, voice_note_id=note.id):
            if note.attempts > MAX_ATTEMPTS:
                log.warning("voice_given_up", attempts=note.attempts - 1)
                await self._refuse(note, "gave_up", UNCLEAR, outbox)
                return
            try:
                async with outbox.typing(note.chat_id):
                    data = await self.files.download(note.file_id)
                    heard = await self.transcriber.transcribe(
                        data, language=language_hint(note.language_code), max_seconds=self.max_seconds
                    )
            except DownloadTooBigError:
                await self._refuse(note, "too_big", TOO_BIG, outbox)
                return
            except AudioTooLongError:
                await self._refuse(note, "too_long", too_long(self.max_seconds), outbox)
                return
            except (UndecodableAudioError, TranscriptionError) as exc:
                log.warning("voice_not_heard", error=str(exc))
                await self._refuse(note, "undecodable", UNCLEAR, outbox)
                return
            except Exception as exc:  # Telegram unreachable, a reset: the sweep tries again after the lease
                log.warning("voice_download_failed", error=str(exc), error_type=exc.__class__.__name__)
                return
            if not heard.text:
                await self._refuse(note, "unclear", UNCLEAR, outbox)
                return
            log.info("voice_heard", seconds=round(heard.seconds, 1), chars=len(heard.text))
            user = UserInfo(note.user_id, note.username, note.first_name, note.language_code)
            received = await self.friend.take(
                note.chat_id, user, heard.text, outbox, telegram_message_id=note.telegram_message_id, kind="voice"
            )
            await VoiceNoteRepo(self.friend.database).finish(
                note.id, status="heard", message_id=received.message_id, seconds_heard=heard.seconds
            )

    async def _refuse(self, note: ClaimedVoiceNote, outcome: str, answer: str, outbox: Outbox) -> None:
        """The kind answer and the note's end, together: a note is refused once."""
        user = UserInfo(note.user_id, note.username, note.first_name, note.language_code)
        async with self.friend.database.transaction() as tx:
            if not await VoiceNoteRepo(tx).finish(note.id, status="refused", outcome=outcome):
                return
            await self.commands.note_other(
                UpdateUnit(tx, note.chat_id, user),
                _described(VoiceIn(note.telegram_message_id, note.kind, note.file_id, note.duration_seconds, None)),
                answer,
            )
        log.info("voice_refused", outcome=outcome)
        outbox.kick(note.chat_id)


def _described(note: VoiceIn) -> str:
    """What operators see for a note that was not heard."""
    minutes, seconds = divmod(note.duration, 60)
    what = "video note" if note.kind == "video_note" else "voice note"
    return f"[{what}, {minutes}:{seconds:02d}]"
