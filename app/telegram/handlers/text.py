"""Plain text from a private chat: store it now, reply in the background."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import Message, Update

from app.services.commands import CommandService, UpdateUnit
from app.services.friend import Friend
from app.services.outbox import Outbox
from app.telegram import texts
from app.telegram.filters import has_text, private_chat
from app.telegram.handlers.common import user_info

router = Router(name=__name__)
router.message.filter(private_chat)


@router.message(has_text)
async def on_text(
    message: Message,
    event_update: Update,
    friend: Friend,
    commands: CommandService,
    outbox: Outbox,
    unit: UpdateUnit | None = None,
) -> None:
    """Returns once the message is stored, so the update is confirmed only then."""
    if unit is not None:  # text that is nothing once cleaned (control characters only): not plain text
        await commands.note_other(unit, "[empty text]", texts.EMPTY_TEXT)
        return
    await friend.take(
        message.chat.id,
        user_info(message.from_user, message.chat.id),
        message.text or "",
        outbox,
        telegram_message_id=message.message_id,
        update_id=event_update.update_id,
    )
