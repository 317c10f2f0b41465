"""Voice and round video notes from a private chat: kept now, heard and answered in the background."""

from __future__ import annotations

import structlog
from aiogram import Router
from aiogram.types import Message

from app.services.commands import CommandService, UpdateUnit
from app.services.outbox import Outbox
from app.services.voice import VoiceIn, VoiceNotes
from app.telegram import texts
from app.telegram.filters import has_voice, private_chat

router = Router(name=__name__)
router.message.filter(private_chat)
log = structlog.get_logger(__name__)


@router.message(has_voice)
async def on_voice(
    message: Message, unit: UpdateUnit, commands: CommandService, outbox: Outbox, voice: VoiceNotes | None = None
) -> None:
    """Returns once the note is stored (the update is confirmed only then); hearing it comes after."""
    attached = message.voice or message.video_note
    assert attached is not None
    kind = "voice" if message.voice else "video_note"
    if voice is None:  # no recogniser here (ASR_BACKEND=off, or it could not load: said at start-up)
        log.info("voice_without_recognizer", kind=kind)
        await commands.note_other(unit, f"[{kind.replace('_', ' ')}]", texts.NOT_TEXT)
        return
    note = VoiceIn(message.message_id, kind, attached.file_id, attached.duration, attached.file_size)
    note_id = await voice.keep(unit, note)
    if note_id is not None:
        unit.then.append(lambda: voice.spawn(note_id, outbox))
