"""Plain text from a private chat: store it now, reply in the background."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import Message, Update

from app.services.conversation import ConversationService
from app.services.text import clean_text
from app.telegram import texts
from app.telegram.handlers.common import user_info
from app.telegram.outbox import TelegramOutbox

router = Router(name=__name__)
router.message.filter(F.chat.type == "private")


@router.message(F.text)
async def on_text(
    message: Message, event_update: Update, conversation: ConversationService, outbox: TelegramOutbox
) -> None:
    """Returns once the message is stored, so the update is confirmed only then."""
    text = clean_text(message.text or "")
    if not text:
        await conversation.record_update(event_update.update_id, message.chat.id)
        await message.answer(texts.EMPTY_TEXT)
        return
    received = await conversation.receive(
        message.chat.id, user_info(message.from_user, message.chat.id), text,
        telegram_message_id=message.message_id, update_id=event_update.update_id,
    )
    if received.responder:
        conversation.spawn(conversation.respond(message.chat.id, outbox))
